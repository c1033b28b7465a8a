#!/usr/bin/env perl
# What Windows and Finder send (client_quirks.c):
#  - `MS-Author-Via: DAV` on OPTIONS of the live and the snapshot location
#    (mod_dav sends it; checked so that it stays);
#  - Finder's PUT: a chunked body with `X-Expected-Entity-Length: N`, sent
#    by a raw-socket client in pieces: the file gets every byte (and the
#    SHA-1 recorded is the file's); a body shorter or longer than announced
#    gets 400 naming the header, and nothing is stored (no file, no
#    sidecar; an existing file and its sidecar stay byte-identical); a
#    malformed value, or one that contradicts Content-Length, gets 400;
#  - Windows' `Translate: f` accepted on GET, PROPFIND and PUT, changing
#    nothing.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha1_hex);
use MirrorDAV::Test qw(slurp sha1_file);
use MirrorDAV::RawClient qw(rnd plan_split connect_raw send_pieces read_response);

my $seed = $ENV{MIRRORDAV_CRASH_SEED} // int(rand(1 << 30));
srand $seed;
note "seed $seed";

my $s    = MirrorDAV::Test->start_server;
my $live = $s->live;

open my $rnd, '<:raw', '/dev/urandom' or die;
sub rbytes { my $n = shift; my $b = ''; read($rnd, $b, $n) if $n > 0; $b }

# ---------------------------------------------------------- MS-Author-Via
is($s->put('/dav/f.txt', 'hello')->{status}, 201, 'PUT f.txt');
for my $p ('/dav/', '/dav/f.txt', '/snapshots/') {
    my $r = $s->request('OPTIONS', $p);
    is($r->{status}, 200, "OPTIONS $p");
    is($r->{headers}{'ms-author-via'}, 'DAV', "OPTIONS $p: MS-Author-Via: DAV");
}

# ------------------------------------------------------------- Finder PUT
# A Finder PUT of BODY, its chunked coding in random chunk sizes, its
# bytes sent in pieces; ANNOUNCE is X-Expected-Entity-Length.
sub finder_put {
    my ($path, $body, $announce, %h) = @_;
    my $chunked = '';
    for (my $off = 0; $off < length $body;) {
        my $n = rnd(1, 70000);
        $n = length($body) - $off if $n > length($body) - $off;
        $chunked .= sprintf("%x\r\n", $n) . substr($body, $off, $n) . "\r\n";
        $off += $n;
    }
    $chunked .= "0\r\n\r\n";
    my $head = "PUT $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        . "User-Agent: WebDAVFS/3.0.0 (03008000) Darwin/21.6.0 (x86_64)\r\n"
        . "Transfer-Encoding: chunked\r\n"
        . "X-Expected-Entity-Length: $announce\r\n"
        . join('', map { "$_: $h{$_}\r\n" } sort keys %h) . "\r\n";
    my $raw = $head . $chunked;
    my $sock = connect_raw($s->port);
    send_pieces($sock, plan_split($raw, length $head,
        (qw(header_packet small random))[int rand 3]));
    my $buf = '';
    my $resp = read_response($sock, \$buf);
    close $sock;
    return $resp;
}

sub sha1_prop {
    my ($path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>});
    return $r->{content} =~ m{sha1>([0-9a-f]{40})<} ? $1 : '';
}

for my $size (0, 1, 4096, 300_000, 2_000_000) {
    my $body = rbytes($size);
    my $r = finder_put("/dav/finder-$size.bin", $body, $size);
    is($r->[0], 201, "Finder chunked PUT of $size bytes: 201") or diag($r->[1]);
    is(sha1_file("$live/finder-$size.bin") // '', sha1_hex($body), '... every byte stored');
    is(sha1_prop("/dav/finder-$size.bin"), sha1_hex($body), '... and its SHA-1 recorded');
}

# A snapshot of the folder and its sidecar folder: names and contents.
sub state_of {
    my %h;
    for my $d ($live, "$live/.mirrordav") {
        opendir my $dh, $d or next;
        for my $n (grep { !/^\.\.?$/ } readdir $dh) {
            $h{"$d/$n"} = -d "$d/$n" ? 'dir' : sha1_file("$d/$n");
        }
    }
    return \%h;
}

my $before = state_of();
{
    my $body = rbytes(500_000);
    my $r = finder_put('/dav/short.bin', substr($body, 0, 400_000), 500_000);
    is($r->[0], 400, 'a body shorter than announced: 400');
    like($r->[1], qr/X-Expected-Entity-Length announced 500000 bytes; the body had 400000/,
         '... naming the header and both lengths');
    $r = finder_put('/dav/long.bin', $body . 'x', 500_000);
    is($r->[0], 400, 'a body longer than announced: 400');
    like($r->[1], qr/X-Expected-Entity-Length/, '... naming the header');
    # Over an existing file: it stays as it was.
    $r = finder_put('/dav/finder-4096.bin', substr($body, 0, 100), 4096);
    is($r->[0], 400, 'a short body over an existing file: 400');
    $r = finder_put('/dav/bad.bin', 'abc', '3x');
    is($r->[0], 400, 'a malformed X-Expected-Entity-Length: 400');
    like($r->[1], qr/X-Expected-Entity-Length must be a byte count/, '... naming it');
    $r = $s->put('/dav/cl.bin', 'abcd', { 'X-Expected-Entity-Length' => 5 });
    is($r->{status}, 400, 'X-Expected-Entity-Length contradicting Content-Length: 400');
    like($r->{content}, qr/differs from Content-Length/, '... naming both');
    $r = $s->put('/dav/cl.bin', 'abcd', { 'X-Expected-Entity-Length' => 4 });
    is($r->{status}, 201, 'agreeing with Content-Length: 201');
    unlink "$live/cl.bin", "$live/.mirrordav/cl.bin.db" or die;
    is_deeply(state_of(), $before, 'nothing stored by the refused PUTs; the existing file and sidecars unchanged');
}

# ------------------------------------------------------------ Translate: f
{
    my %tf = (Translate => 'f');
    my $body = rbytes(10_000);
    my $r = $s->put('/dav/t.bin', $body, \%tf);
    is($r->{status}, 201, 'PUT with Translate: f: 201');
    is(sha1_file("$live/t.bin"), sha1_hex($body), '... stored as sent');
    my $plain = $s->get('/dav/t.bin');
    $r = $s->get('/dav/t.bin', \%tf);
    is($r->{status}, 200, 'GET with Translate: f: 200');
    is($r->{content}, $body, '... the bytes as stored');
    is($r->{headers}{etag}, $plain->{headers}{etag}, '... the same ETag');
    is($r->{headers}{'content-type'}, $plain->{headers}{'content-type'}, '... the same type');
    my $pf = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>';
    my $a = $s->request('PROPFIND', '/dav/', { Depth => 1, 'Content-Type' => 'application/xml' }, $pf);
    my $b = $s->request('PROPFIND', '/dav/', { Depth => 1, 'Content-Type' => 'application/xml', %tf }, $pf);
    is($b->{status}, 207, 'PROPFIND with Translate: f: 207');
    is($b->{content}, $a->{content}, '... the same multistatus');
}

done_testing;
