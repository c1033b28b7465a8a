#!/usr/bin/env perl
# HTTP behaviour around GET (SPEC section 2):
#  - a collection addressed without its trailing slash is redirected (301,
#    absolute Location, query string kept) for GET and HEAD, as mod_dir
#    does, while WebDAV methods keep working on the slashless URI; lftp
#    opened on such a URI lists and uploads into the right folder;
#  - stored files are served inert (Content-Security-Policy: sandbox,
#    X-Content-Type-Options: nosniff) unless MirrorDAVPassiveContent Off;
#    the module's own listing pages carry neither and stay plain pages.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MirrorDAV::Test qw(slurp spew);

my $srv  = MirrorDAV::Test->start_server;
my $live = $srv->live;
my $port = $srv->port;
my $base = "http://127.0.0.1:$port";

is($srv->mkcol('/dav/dir')->{status}, 201, 'MKCOL /dav/dir');
is($srv->mkcol('/dav/dir/sub%20dir')->{status}, 201, 'MKCOL /dav/dir/sub%20dir');
is($srv->put('/dav/dir/a.txt', "a\n")->{status}, 201, 'PUT /dav/dir/a.txt');
is($srv->put('/dav/top.txt', "top\n")->{status}, 201, 'PUT /dav/top.txt');
my $html = qq{<!DOCTYPE html><html><body><script>fetch('/dav/x',{method:'DELETE'})</script></body></html>\n};
is($srv->put('/dav/evil.html', $html)->{status}, 201, 'PUT an .html file');

# ------------------------------------------------------------ redirects
for my $case (['/dav/dir', '/dav/dir/'],
              ['/dav/dir?x=1&y=%20z', '/dav/dir/?x=1&y=%20z'],
              ['/dav/dir/sub%20dir', '/dav/dir/sub%20dir/'],
              ['/dav', '/dav/']) {
    my ($from, $to) = @$case;
    for my $m ('GET', 'HEAD') {
        my $r = $srv->raw_request($m, $from);
        is($r->{status}, 301, "$m $from -> 301");
        is($r->{headers}{location}, "$base$to", "... Location: $base$to");
    }
}
my $r = $srv->raw_request('GET', '/dav/dir/', { Accept => 'text/html' });
is($r->{status}, 200, 'GET /dav/dir/ (with the slash) -> 200');
like($r->{content}, qr{<a href="(?:/dav/dir/|\./)a\.txt">}, '... the listing of dir');
$r = $srv->raw_request('GET', '/dav/dir/a.txt');
is($r->{status}, 200, 'GET of a file is not redirected');
$r = $srv->raw_request('GET', '/dav/nothing');
is($r->{status}, 404, 'GET of a missing name -> 404, not a redirect');

# WebDAV methods keep working on the slashless URI.
$r = $srv->raw_request('PROPFIND', '/dav/dir', { Depth => 1 });
is($r->{status}, 207, 'PROPFIND /dav/dir (no slash) -> 207');
like($r->{content}, qr{<D:href>/dav/dir/a\.txt</D:href>}, '... lists the folder');
$r = $srv->raw_request('PROPFIND', '/dav', { Depth => 0 });
is($r->{status}, 207, 'PROPFIND /dav (no slash) -> 207');
$r = $srv->raw_request('OPTIONS', '/dav/dir');
is($r->{status}, 200, 'OPTIONS /dav/dir -> 200');
$r = $srv->raw_request('MKCOL', '/dav/dir');
is($r->{status}, 405, 'MKCOL /dav/dir (exists) -> 405, not a redirect');
$r = $srv->raw_request('COPY', '/dav/dir', { Destination => "$base/dav/dir2" });
is($r->{status}, 201, 'COPY /dav/dir -> 201');
$r = $srv->raw_request('MOVE', '/dav/dir2', { Destination => "$base/dav/dir3" });
is($r->{status}, 201, 'MOVE /dav/dir2 -> 201');
$r = $srv->raw_request('DELETE', '/dav/dir3');
is($r->{status}, 204, 'DELETE /dav/dir3 -> 204');

# lftp opened on the slashless URI of a folder: ls and cls show that
# folder, and put lands there, not in the parent.
SKIP: {
    skip 'lftp is not installed', 6 unless `sh -c 'command -v lftp'`;
    my $work = "$srv->{base}/lftp";
    mkdir $work or die;
    spew("$work/upload.txt", "uploaded by lftp\n");
    my $script = "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; "
               . "set xfer:clobber yes; open $base/dav/dir; "
               . "echo LS; ls; echo CLS; cls -1; put upload.txt; echo AFTER; cls -1";
    my $out = `cd '$work' && timeout 60 lftp -c '$script' 2>&1`;
    is($?, 0, 'the lftp session succeeded') or diag($out);
    my ($ls)    = $out =~ /^LS\n(.*?)^CLS\n/ms;
    my ($cls)   = $out =~ /^CLS\n(.*?)^AFTER\n/ms;
    my ($after) = $out =~ /^AFTER\n(.*)\z/ms;
    like($ls // '', qr/\ba\.txt\b/, 'lftp ls lists the folder (a.txt)');
    unlike($ls // '', qr/\btop\.txt\b/, '... not the parent (top.txt)');
    is(join(',', sort split /\n/, $cls // ''), 'a.txt,sub dir/', 'lftp cls lists the folder');
    ok(-f "$live/dir/upload.txt" && !-e "$live/upload.txt",
       'lftp put landed in the folder, not in its parent');
    is(join(',', sort split /\n/, $after // ''), 'a.txt,sub dir/,upload.txt',
       'lftp cls then lists the upload in the folder') or diag($out);
}

# ------------------------------------------------------------ passive content
for my $m ('GET', 'HEAD') {
    for my $f ('/dav/evil.html', '/dav/top.txt') {
        my $r = $srv->raw_request($m, $f);
        is($r->{status}, 200, "$m $f -> 200");
        is($r->{headers}{'content-security-policy'}, 'sandbox', '... Content-Security-Policy: sandbox');
        is($r->{headers}{'x-content-type-options'}, 'nosniff', '... X-Content-Type-Options: nosniff');
    }
}
$r = $srv->raw_request('GET', '/dav/evil.html', { Range => 'bytes=0-9' });
is($r->{status}, 206, 'a range of the .html file -> 206');
is($r->{headers}{'content-security-policy'}, 'sandbox', '... sandboxed too');
for my $p ('/dav/', '/dav/dir/') {
    my $r = $srv->raw_request('GET', $p, { Accept => 'text/html' });
    is($r->{status}, 200, "the listing $p -> 200");
    like($r->{headers}{'content-type'}, qr{^text/html}, '... an HTML page');
    # The page is the module's own: its own policy (no script at all,
    # docs/BROWSER.md), not the sandbox of stored files.
    like($r->{headers}{'content-security-policy'} // '', qr/^default-src 'none';/,
         '... with the page\'s own CSP, not the sandbox (a listing is ours)');
    like($r->{content}, qr{</table>\s*</body></html>}, '... complete');
}

# Off: served as before.
my $off = MirrorDAV::Test->start_server(
    conf_extra => "<Location /dav>\n    MirrorDAVPassiveContent Off\n</Location>");
is($off->put('/dav/page.html', $html)->{status}, 201, 'PassiveContent Off: PUT an .html file');
$r = $off->raw_request('GET', '/dav/page.html');
is($r->{status}, 200, '... GET -> 200');
like($r->{headers}{'content-type'}, qr{^text/html}, '... text/html');
ok(!exists $r->{headers}{'content-security-policy'}, '... no CSP');
ok(!exists $r->{headers}{'x-content-type-options'}, '... no nosniff');

done_testing;
