#!/usr/bin/env perl
# A replay of what Windows Explorer (the WebDAV MiniRedir) sends when a
# file is dropped onto a mounted share: OPTIONS; PROPFIND depth 0 and 1;
# LOCK of the new name; PUT of 0 bytes, then of the content, with the lock
# token; PROPPATCH of the Win32 times and attributes; UNLOCK.  It must end
# with the file, its properties and its mtime as sent.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MirrorDAV::Test qw(slurp);

my $s    = MirrorDAV::Test->start_server;
my $live = $s->live;
my %win  = ('User-Agent' => 'Microsoft-WebDAV-MiniRedir/10.0.19045', translate => 'f');

my $r = $s->request('OPTIONS', '/dav/', {%win});
is $r->{status}, 200, 'OPTIONS';
like $r->{headers}{dav} // '', qr/\b2\b/, 'the share claims class 2 (Windows needs it to write)';

my $pf_body = '<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:prop>'
  . '<D:creationdate/><D:displayname/><D:getcontentlength/><D:getcontenttype/><D:getetag/>'
  . '<D:getlastmodified/><D:lockdiscovery/><D:resourcetype/><D:supportedlock/>'
  . '<Z:Win32FileAttributes xmlns:Z="urn:schemas-microsoft-com:"/></D:prop></D:propfind>';
for my $depth (0, 1) {
    $r = $s->request('PROPFIND', '/dav/', { %win, Depth => $depth, 'Content-Type' => 'text/xml' }, $pf_body);
    is $r->{status}, 207, "PROPFIND depth $depth";
}
$r = $s->request('PROPFIND', '/dav/report.docx', { %win, Depth => 0, 'Content-Type' => 'text/xml' }, $pf_body);
is $r->{status}, 404, 'PROPFIND of the new name: not there yet';

$r = $s->request('LOCK', '/dav/report.docx',
    { %win, Timeout => 'Second-3600', 'Content-Type' => 'text/xml' },
    '<?xml version="1.0" encoding="utf-8" ?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
  . '<D:locktype><D:write/></D:locktype><D:owner><D:href>WORKGROUP\alice</D:href></D:owner></D:lockinfo>');
is $r->{status}, 201, 'LOCK of an unmapped URL creates it: 201';
my $token = $r->{headers}{'lock-token'} // '';
like $token, qr/^<opaquelocktoken:[0-9a-f-]{36}>$/, 'lock token';
my $if = "($token)";

$r = $s->request('PUT', '/dav/report.docx', { %win, If => $if, 'Content-Length' => 0 }, '');
ok $r->{status} == 200 || $r->{status} == 201 || $r->{status} == 204, "PUT of 0 bytes with the token: $r->{status}";
$r = $s->request('PUT', '/dav/report.docx', { %win }, 'intruder');
is $r->{status}, 423, 'a PUT without the token is refused while locked';

my $content = join '', map { chr(($_ * 31) % 256) } 1 .. 50_000;
$r = $s->request('PUT', '/dav/report.docx', { %win, If => $if }, $content);
is $r->{status}, 204, 'PUT of the content with the token';

my %times = (
    Win32CreationTime     => 'Mon, 02 Mar 2026 08:15:00 GMT',
    Win32LastAccessTime   => 'Fri, 20 Nov 2026 17:45:10 GMT',
    Win32LastModifiedTime => 'Thu, 19 Nov 2026 09:30:42 GMT',
);
my $props = join '', map { "<Z:$_>$times{$_}</Z:$_>" } sort keys %times;
$r = $s->request('PROPPATCH', '/dav/report.docx', { %win, If => $if, 'Content-Type' => 'text/xml' },
    '<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:">'
  . "<D:set><D:prop>$props<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>");
is $r->{status}, 207, 'PROPPATCH of the Win32 properties';
unlike $r->{content}, qr{HTTP/1.1 [45]\d\d}, 'every property accepted' or diag $r->{content};

$r = $s->request('UNLOCK', '/dav/report.docx', { %win, 'Lock-Token' => $token });
is $r->{status}, 204, 'UNLOCK';

# The end state.
is slurp("$live/report.docx"), $content, 'the file holds the content';
is((stat "$live/report.docx")[9], 1795080642, 'its mtime is Win32LastModifiedTime');
$r = $s->request('PROPFIND', '/dav/report.docx', { %win, Depth => 0, 'Content-Type' => 'text/xml' },
    '<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:prop>'
  . join('', map { "<Z:$_/>" } sort keys %times) . '<Z:Win32FileAttributes/><D:getlastmodified/><D:lockdiscovery/></D:prop></D:propfind>');
for my $p (sort keys %times) {
    like $r->{content}, qr{<(\w+):$p\b[^>]*>\Q$times{$p}\E</\1:$p>}, "$p as sent";
}
like $r->{content}, qr{<(\w+):Win32FileAttributes\b[^>]*>00000020</\1:Win32FileAttributes>}, 'Win32FileAttributes as sent';
like $r->{content}, qr{<lp\d+:getlastmodified>Thu, 19 Nov 2026 09:30:42 GMT</lp\d+:getlastmodified>}, 'getlastmodified follows';
unlike $r->{content}, qr{activelock}, 'no lock remains';
$r = $s->request('PUT', '/dav/report.docx', { %win }, 'after unlock');
is $r->{status}, 204, 'the file can be written without a token again';

done_testing;
