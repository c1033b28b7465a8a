#!/usr/bin/env perl
# GET and HEAD of files are fast paths (SPEC section 2): byte ranges, ETag,
# If-None-Match, If-Modified-Since, HEAD, Content-Type from mod_mime; and a
# collection asked for by a browser is an HTML page with names escaped.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(strftime);
use MirrorDAV::Test qw(slurp spew random_file);

my $srv  = MirrorDAV::Test->start_server;
my $live = $srv->live;
my $started = time;

sub http_date { strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime $_[0]) }

my $data = join '', map { sprintf "%04d|", $_ } 0 .. 199;   # 1000 bytes
is(length $data, 1000, 'test data is 1000 bytes');
my $mtime = 1_600_000_000;
my $r = $srv->put('/dav/data.txt', $data, { 'X-OC-Mtime' => $mtime });
is($r->{status}, 201, 'PUT data.txt');

# ------------------------------------------------------------ plain GET, HEAD
$r = $srv->get('/dav/data.txt');
is($r->{status}, 200, 'GET -> 200');
ok($r->{content} eq $data, 'GET returns the bytes');
is($r->{headers}{'content-length'}, 1000, 'Content-Length');
like($r->{headers}{'content-type'} // '', qr{^text/plain\b}, '.txt is text/plain (mod_mime)');
is($r->{headers}{'last-modified'}, http_date($mtime), 'Last-Modified is the file mtime');
like($r->{headers}{'accept-ranges'} // '', qr/bytes/, 'Accept-Ranges: bytes');
my $etag = $r->{headers}{etag};
like($etag // '', qr/^(W\/)?"[^"]+"$/, "an ETag ($etag)");

my $h = $srv->request('HEAD', '/dav/data.txt');
is($h->{status}, 200, 'HEAD -> 200');
is($h->{headers}{'content-length'}, 1000, 'HEAD gives the Content-Length');
is($h->{content} // '', '', 'HEAD has no body');
is($h->{headers}{etag}, $etag, 'HEAD gives the same ETag');
is($h->{headers}{'last-modified'}, http_date($mtime), 'HEAD gives Last-Modified');
# HTTP::Tiny would not notice a body after a HEAD response; read the socket.
my $raw = $srv->raw_request('HEAD', '/dav/data.txt');
is($raw->{content}, '', 'nothing follows the HEAD response on the wire');

# ------------------------------------------------------------ ranges
$r = $srv->get('/dav/data.txt', { Range => 'bytes=0-9' });
is($r->{status}, 206, 'Range bytes=0-9 -> 206');
is($r->{content}, substr($data, 0, 10), '... the first 10 bytes');
is($r->{headers}{'content-range'}, 'bytes 0-9/1000', '... Content-Range');
is($r->{headers}{'content-length'}, 10, '... Content-Length 10');

$r = $srv->get('/dav/data.txt', { Range => 'bytes=-5' });
is($r->{status}, 206, 'Range bytes=-5 -> 206');
is($r->{content}, substr($data, -5), '... the last 5 bytes');
is($r->{headers}{'content-range'}, 'bytes 995-999/1000', '... Content-Range');

$r = $srv->get('/dav/data.txt', { Range => 'bytes=990-' });
is($r->{status}, 206, 'Range bytes=990- -> 206');
is($r->{content}, substr($data, 990), '... the rest');

$r = $srv->get('/dav/data.txt', { Range => 'bytes=0-1,500-504,-3' });
is($r->{status}, 206, 'multiple ranges -> 206');
my ($boundary) = ($r->{headers}{'content-type'} // '') =~ m{^multipart/byteranges;\s*boundary="?([^";]+)"?};
ok($boundary, 'multipart/byteranges with a boundary') or diag($r->{headers}{'content-type'});
my @parts;
if ($boundary) {
    for my $part (split /\r\n--\Q$boundary\E(?:--)?\r?\n?/, "\r\n$r->{content}") {
        my ($hd, $body) = split /\r\n\r\n/, $part, 2;
        next unless defined $body;
        my ($cr) = $hd =~ /^Content-Range:\s*(.+?)\s*$/mi;
        push @parts, [$cr, $body];
    }
}
is_deeply(\@parts, [['bytes 0-1/1000', substr($data, 0, 2)],
                    ['bytes 500-504/1000', substr($data, 500, 5)],
                    ['bytes 997-999/1000', substr($data, 997)]],
          'the three parts, each with its Content-Range')
    or diag($r->{content});

$r = $srv->get('/dav/data.txt', { Range => 'bytes=5000-6000' });
is($r->{status}, 416, 'an unsatisfiable range -> 416');
# (httpd's own static files send no Content-Range with a 416 either.)
note('416 Content-Range: ' . ($r->{headers}{'content-range'} // 'none'));

$r = $srv->get('/dav/data.txt', { Range => 'bytes=0-9', 'If-Range' => $etag });
is($r->{status}, 206, 'If-Range with the current ETag -> 206');
$r = $srv->get('/dav/data.txt', { Range => 'bytes=0-9', 'If-Range' => '"stale"' });
is($r->{status}, 200, 'If-Range with a stale ETag -> 200, the whole file');
is(length $r->{content}, 1000, '... all of it');

# ------------------------------------------------------------ conditionals
$r = $srv->get('/dav/data.txt', { 'If-None-Match' => $etag });
is($r->{status}, 304, 'If-None-Match with the ETag -> 304');
is($r->{content} // '', '', '... no body');
is($r->{headers}{etag}, $etag, '... the ETag is repeated');
$r = $srv->get('/dav/data.txt', { 'If-None-Match' => '"something-else"' });
is($r->{status}, 200, 'If-None-Match with another ETag -> 200');
$r = $srv->get('/dav/data.txt', { 'If-None-Match' => '*' });
is($r->{status}, 304, 'If-None-Match: * -> 304');
$r = $srv->request('HEAD', '/dav/data.txt', { 'If-None-Match' => $etag });
is($r->{status}, 304, 'HEAD with If-None-Match -> 304');

$r = $srv->get('/dav/data.txt', { 'If-Modified-Since' => http_date($mtime) });
is($r->{status}, 304, 'If-Modified-Since the mtime -> 304');
$r = $srv->get('/dav/data.txt', { 'If-Modified-Since' => http_date($mtime + 3600) });
is($r->{status}, 304, 'If-Modified-Since a later date -> 304');
$r = $srv->get('/dav/data.txt', { 'If-Modified-Since' => http_date($mtime - 1) });
is($r->{status}, 200, 'If-Modified-Since an earlier date -> 200');
is(length $r->{content}, 1000, '... the whole file');

$r = $srv->get('/dav/data.txt', { 'If-Match' => '"something-else"' });
is($r->{status}, 412, 'If-Match with another ETag -> 412');
$r = $srv->get('/dav/data.txt', { 'If-Match' => $etag });
is($r->{status}, 200, 'If-Match with the ETag -> 200');
$r = $srv->get('/dav/data.txt', { 'If-Unmodified-Since' => http_date($mtime - 60) });
is($r->{status}, 412, 'If-Unmodified-Since an earlier date -> 412');

# ------------------------------------------------------------ ETag after PUT
# Same size, same X-OC-Mtime, different bytes: the ETag must change, or a
# cache would keep serving the old data.
(my $data2 = $data) =~ tr/0-9/a-j/;
is(length $data2, length $data, 'the new version has the same size');
$r = $srv->put('/dav/data.txt', $data2, { 'X-OC-Mtime' => $mtime });
is($r->{status}, 204, 'PUT the new version with the same X-OC-Mtime');
is((stat "$live/data.txt")[9], $mtime, 'the mtime is the same');
$r = $srv->get('/dav/data.txt');
ok($r->{content} eq $data2, 'GET returns the new version');
my $etag2 = $r->{headers}{etag};
isnt($etag2, $etag, "the ETag changed ($etag -> $etag2)");
$r = $srv->get('/dav/data.txt', { 'If-None-Match' => $etag });
is($r->{status}, 200, 'If-None-Match with the old ETag -> 200');
ok($r->{content} eq $data2, '... with the new bytes');
$r = $srv->get('/dav/data.txt', { Range => 'bytes=0-9', 'If-Range' => $etag });
is($r->{status}, 200, 'If-Range with the old ETag -> 200, the whole new file');
$r = $srv->propfind('/dav/data.txt', 0);
my ($petag) = $r->{content} =~ m{<(?:\w+:)?getetag>(.*?)</(?:\w+:)?getetag>}s;
is($petag, $etag2, 'PROPFIND getetag equals the GET ETag');

# Even rewritten within the same second, without X-OC-Mtime.
my $e = $etag2;
for my $i (1 .. 3) {
    my $v = $data2;
    substr($v, 0, 1, $i);
    $srv->put('/dav/data.txt', $v);
    my $n = $srv->request('HEAD', '/dav/data.txt')->{headers}{etag};
    isnt($n, $e, "rapid rewrite $i changes the ETag");
    $e = $n;
}

# ------------------------------------------------------------ a big file
my $big = random_file("$live/../../big.tmp", 5 << 20);
$r = $srv->put('/dav/big.bin', slurp($big));
is($r->{status}, 201, 'PUT a 5 MiB file');
$r = $srv->get('/dav/big.bin');
ok($r->{content} eq slurp($big), 'GET returns all 5 MiB');
like($r->{headers}{'content-type'} // 'none', qr{^application/octet-stream$|^none$},
     'an unknown type is not guessed as text');
$r = $srv->get('/dav/big.bin', { Range => 'bytes=4194304-4194313' });
is($r->{content}, substr(slurp($big), 4194304, 10), 'a range deep in a big file');
unlink $big;

# ------------------------------------------------------------ Content-Type
for my $t (['page.html', qr{^text/html}], ['pic.png', qr{^image/png$}],
           ['doc.pdf', qr{^application/pdf$}], ['x.json', qr{^application/json}]) {
    $srv->put("/dav/$t->[0]", 'x');
    like($srv->get("/dav/$t->[0]")->{headers}{'content-type'} // '', $t->[1],
         "Content-Type of $t->[0]");
}

# ------------------------------------------------------------ HTML listing
is($srv->mkcol('/dav/browse')->{status}, 201, 'MKCOL browse');
my %names = (
    '%3Cb%3E%26x.txt'                 => '<b>&x.txt',
    'x%22%20onclick%3D%22alert(1).txt' => 'x" onclick="alert(1).txt',
    'plain.txt'                        => 'plain.txt',
    'caf%C3%A9.txt'                    => "caf\xc3\xa9.txt",
);
for my $u (sort keys %names) {
    is($srv->put("/dav/browse/$u", "x")->{status}, 201, "PUT $names{$u}");
    ok(-f "$live/browse/$names{$u}", "... stored as '$names{$u}'");
}
is($srv->mkcol('/dav/browse/sub%20dir')->{status}, 201, 'MKCOL a subfolder');

$r = $srv->get('/dav/browse/', { Accept => 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8' });
is($r->{status}, 200, 'GET of a collection with Accept: text/html -> 200');
like($r->{headers}{'content-type'} // '', qr{^text/html}, '... an HTML page');
my $html = $r->{content};
like($html, qr/<html/i, '... with an <html> element');
like($html, qr/plain\.txt/, 'it lists plain.txt');
like($html, qr/caf\x{c3}\x{a9}\.txt|caf&eacute;\.txt|caf&#233;\.txt|caf%C3%A9\.txt/i, 'it lists café.txt');
like($html, qr/sub dir|sub%20dir/, 'it lists the subfolder');
like($html, qr/&lt;b&gt;&amp;x\.txt/, 'the name <b>&x.txt appears escaped');
unlike($html, qr/<b>&x/, 'the name never appears raw');
like($html, qr/x&quot; onclick=&quot;alert\(1\)\.txt|x&#34; onclick=&#34;alert\(1\)\.txt/,
     'a name with quotes appears escaped');
unlike($html, qr/" onclick="/, 'a name with quotes cannot inject an attribute');
unlike($html, qr/\.mirrordav/, 'the sidecar folder is not listed');
# Every name has a link that leads to it: HTML-unescaped, then URL-decoded.
my %hrefs;
for my $href ($html =~ /href="([^"]*)"/g) {
    (my $u = $href) =~ s/&lt;/</g;
    $u =~ s/&gt;/>/g; $u =~ s/&quot;/"/g; $u =~ s/&#0*39;/'/g; $u =~ s/&amp;/&/g;
    $u =~ s/%([0-9a-fA-F]{2})/chr hex $1/ge;
    $hrefs{$u} = 1;
}
for my $n (sort values %names) {
    ok($hrefs{"/dav/browse/$n"} || $hrefs{$n} || $hrefs{"./$n"}, "a link leads to '$n'")
        or diag(join "\n", sort keys %hrefs);
}
ok($hrefs{'/dav/browse/sub dir/'} || $hrefs{'sub dir/'} || $hrefs{'./sub dir/'},
   'a link leads to the subfolder');

# ------------------------------------------------------------ configuration
# The configuration draws no complaint: the MPM checks its spare-thread
# bounds at start and in its once-a-second maintenance, so give it two
# rounds before reading the log.
sleep 1 while time < $started + 3;
my @complaints = grep { /\[[\w:]*(?:warn|error|crit|alert|emerg)\]/ } split /\n/, $srv->error_log;
is_deeply(\@complaints, [], 'no [warn] or [error] in the error log after start')
    or diag(join "\n", @complaints);

done_testing;
