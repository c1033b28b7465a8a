#!/usr/bin/env perl
# /snapshots/ over WebDAV (SPEC sections 1, 6): MKCOL and DELETE of whole
# snapshots; every other write anywhere under /snapshots/ refused with 403
# and its cause, whatever locks the client holds, with nothing changed on
# disk; browsing like the live tree (PROPFIND, GET, HEAD, ranges,
# conditionals, dead properties and SHA-1 from the snapshot's sidecars),
# by curl-like requests, cadaver and rclone; restore by COPY into /dav/.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Find ();
use Digest::SHA ();
use POSIX ();
use MirrorDAV::Test qw(slurp spew sha1_file random_file);

my $srv = MirrorDAV::Test->start_server;
my $vol = $srv->volume;
my $tmp = File::Temp::tempdir('snapdav-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $NS  = 'http://mirrordav.org/ns';

sub proppatch {
    my ($path, $name, $value) = @_;
    return $srv->request('PROPPATCH', $path, { 'Content-Type' => 'application/xml' },
        qq{<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test">}
      . qq{<D:set><D:prop><Z:$name>$value</Z:$name></D:prop></D:set></D:propertyupdate>});
}

# Every file and folder under DIR: type, size, mode, mtime, link count
# aside, and the SHA-1 of every file's bytes.
sub listing {
    my ($dir) = @_;
    my %l;
    File::Find::find({ no_chdir => 1, wanted => sub {
        my @st = lstat($_) or return;
        my $k = substr($_, length $dir) || '/';
        $l{$k} = -d _ ? "dir $st[2] $st[9]"
               : join(' ', 'file', $st[7], $st[2], $st[9],
                      Digest::SHA->new(1)->addfile($_)->hexdigest);
    } }, $dir);
    return \%l;
}

# ---------------------------------------------------------------- a tree
my $big = random_file("$tmp/big.bin", 256 * 1024 + 5);
my $big_sha = sha1_file($big);
is($srv->put('/dav/a.txt', "alpha\n")->{status}, 201, 'PUT a.txt');
is($srv->mkcol('/dav/dir')->{status}, 201, 'MKCOL dir');
is($srv->put('/dav/dir/big.bin', slurp($big))->{status}, 201, 'PUT dir/big.bin');
is(proppatch('/dav/a.txt', 'color', 'red')->{status}, 207, 'dead property on a.txt');
is(proppatch('/dav/dir', 'kind', 'folder')->{status}, 207, 'dead property on dir');

# ---------------------------------------------------------------- MKCOL
my $r = $srv->mkcol('/snapshots/s1');
is($r->{status}, 201, 'MKCOL /snapshots/s1 takes a snapshot: 201') or diag($r->{content});
ok(-f "$vol/snapshots/s1/dir/big.bin", 'the snapshot is in VOLUME/snapshots/s1');
$r = $srv->mkcol('/snapshots/s1');
is($r->{status}, 405, 'MKCOL of an existing snapshot: 405');
like($r->{content}, qr/exists/, '... naming the cause');
for my $bad ('bad*name', 'sp%20ace', 'x' x 129) {
    $r = $srv->mkcol("/snapshots/$bad");
    is($r->{status}, 400, "MKCOL /snapshots/" . substr($bad, 0, 12) . ": 400");
    like($r->{content}, qr/snapshot name/i, '... naming the cause');
}
ok(!-e "$vol/snapshots/bad*name", 'no snapshot made of a bad name');

# A tree with no record (a snapshot being built) is not shown.
mkdir "$vol/snapshots/.tmp-half";
is($srv->propfind('/snapshots/.tmp-half/', 0)->{status}, 404,
   'a snapshot without a record (being built) is not served: 404');

# ---------------------------------------------------------------- read-only
my @before = (listing("$vol/snapshots"), listing("$vol/state/snapshots"),
              listing("$vol/live"));

# The client holds a lock on the live path: it opens no way in.
$r = $srv->request('LOCK', '/dav/a.txt', { 'Content-Type' => 'application/xml', Timeout => 'Second-600' },
    '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
  . '<D:locktype><D:write/></D:locktype></D:lockinfo>');
is($r->{status}, 200, 'LOCK on the live a.txt');
my $tok = $r->{headers}{'lock-token'} // '';
$tok =~ s/^<|>$//g;
my $if = "(<$tok>)";
@before[2] = listing("$vol/live");   # the LOCK may have touched nothing, but be exact

my $dest = sub { $srv->url($_[0]) };
my $lockbody = '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
             . '</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>';
my @refused = (
    ['PUT over a file',         'PUT',   '/snapshots/s1/a.txt', {}, "changed\n"],
    ['PUT with a lock token',   'PUT',   '/snapshots/s1/a.txt', { If => $if }, "changed\n"],
    ['PUT of a new file',       'PUT',   '/snapshots/s1/new.txt', {}, "new\n"],
    ['PUT of a new snapshot root file', 'PUT', '/snapshots/x.txt', {}, "new\n"],
    ['DELETE of a file',        'DELETE', '/snapshots/s1/a.txt', {}],
    ['DELETE of a folder',      'DELETE', '/snapshots/s1/dir', {}],
    ['DELETE of /snapshots/',   'DELETE', '/snapshots/', {}],
    ['MKCOL inside',            'MKCOL', '/snapshots/s1/newdir', {}],
    ['MKCOL deeper',            'MKCOL', '/snapshots/s1/dir/newdir', {}],
    ['COPY into from the live tree', 'COPY', '/dav/a.txt', { Destination => $dest->('/snapshots/s1/c.txt') }],
    ['COPY into over a file',   'COPY', '/dav/a.txt', { Destination => $dest->('/snapshots/s1/a.txt'), Overwrite => 'T' }],
    ['COPY within a snapshot',  'COPY', '/snapshots/s1/a.txt', { Destination => $dest->('/snapshots/s1/d.txt') }],
    ['COPY into another name at the top', 'COPY', '/snapshots/s1/a.txt', { Destination => $dest->('/snapshots/s9') }],
    ['MOVE from a snapshot',    'MOVE', '/snapshots/s1/a.txt', { Destination => $dest->('/dav/m.txt') }],
    ['MOVE of a snapshot',      'MOVE', '/snapshots/s1', { Destination => $dest->('/snapshots/s2') }],
    ['MOVE into a snapshot',    'MOVE', '/dav/a.txt', { Destination => $dest->('/snapshots/s1/m.txt'), If => $if }],
    ['PROPPATCH',               'PROPPATCH', '/snapshots/s1/a.txt', { 'Content-Type' => 'application/xml' },
        '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test"><D:set><D:prop>'
      . '<Z:color>blue</Z:color></D:prop></D:set></D:propertyupdate>'],
    ['PROPPATCH of a snapshot', 'PROPPATCH', '/snapshots/s1', { 'Content-Type' => 'application/xml' },
        '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test"><D:set><D:prop>'
      . '<Z:color>blue</Z:color></D:prop></D:set></D:propertyupdate>'],
    ['LOCK of a file',          'LOCK', '/snapshots/s1/a.txt', { 'Content-Type' => 'application/xml' }, $lockbody],
    ['LOCK with the live lock token', 'LOCK', '/snapshots/s1/a.txt', { 'Content-Type' => 'application/xml', If => $if }, $lockbody],
    ['LOCK of an unmapped URL', 'LOCK', '/snapshots/s1/lock-null.txt', { 'Content-Type' => 'application/xml' }, $lockbody],
    ['LOCK of a snapshot',      'LOCK', '/snapshots/s1', { 'Content-Type' => 'application/xml', Depth => 'infinity' }, $lockbody],
    ['UNLOCK with the live token', 'UNLOCK', '/snapshots/s1/a.txt', { 'Lock-Token' => "<$tok>" }],
    ['PATCH-APPLY',             'PATCH-APPLY', '/snapshots/s1/a.txt', { 'Content-Type' => 'application/octet-stream' }, "x"],
    ['POST',                    'POST', '/snapshots/s1/a.txt', { 'Content-Type' => 'text/plain' }, "x"],
);
for my $t (@refused) {
    my ($name, $m, $path, $h, $body) = @$t;
    my $r = $srv->request($m, $path, $h, $body);
    is($r->{status}, 403, "$name ($m $path): 403");
    like($r->{content}, qr/Snapshots are read-only: \S/, '... with the cause in the body')
        or diag($r->{content});
}
is_deeply([listing("$vol/snapshots"), listing("$vol/state/snapshots"), listing("$vol/live")],
          \@before, 'nothing changed on disk: snapshots, records, live tree (bytes, modes, times)');
is($srv->request('UNLOCK', '/dav/a.txt', { 'Lock-Token' => "<$tok>" })->{status}, 204,
   'the live lock is released');

# ---------------------------------------------------------------- browsing
# The verifier writes its result into the record; the listing shows it.
$r = $srv->mkcol('/snapshots/s2');
is($r->{status}, 201, 'a second snapshot');
{
    open my $fh, '>>', "$vol/state/snapshots/s1.rec" or die;
    print $fh "verify_time=1700000000\nverify_status=discrepancies\nverify_discrepancies=3\n";
    close $fh;
}
$r = $srv->propfind('/snapshots/', 1);
is($r->{status}, 207, 'PROPFIND Depth 1 of /snapshots/: 207');
my $x = $r->{content};
my %resp = map { m{<D:href>([^<]*)</D:href>} ? ($1 => $_) : () } split m{</D:response>}, $x;
is_deeply([sort keys %resp], ['/snapshots/', '/snapshots/s1/', '/snapshots/s2/'],
          'it lists exactly the complete snapshots') or diag($x);
for my $n ('s1', 's2') {
    my $e = $resp{"/snapshots/$n/"} // '';
    my ($created) = slurp("$vol/state/snapshots/$n.rec") =~ /^created=(\d+)$/m;
    my @t = gmtime($created);
    my $iso = POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', @t);
    like($e, qr{creationdate>\Q$iso\E<}, "$n: creationdate from the record ($iso)");
    like($e, qr{snapshot-backend>hardlink<}, "$n: backend");
    like($e, qr{snapshot-files>2<}, "$n: file count (sidecars not counted)");
    like($e, qr{snapshot-bytes>${\(6 + 256 * 1024 + 5)}<}, "$n: byte count");
}
like($resp{'/snapshots/s1/'}, qr{verify-status>discrepancies<}, 's1: verification status');
like($resp{'/snapshots/s1/'}, qr{verify-discrepancies>3<}, 's1: discrepancies');
like($resp{'/snapshots/s2/'}, qr{verify-status>unverified<}, 's2: not verified');
like($x, qr{xmlns:lp\d+="\Q$NS\E"}, 'in the mirrordav namespace');
$r = $srv->get('/snapshots/', { Accept => 'text/html' });
is($r->{status}, 200, 'GET /snapshots/ from a browser: a page');
like($r->{content}, qr{href="[^"]*s1/"}, '... that links to s1');
unlike($r->{content}, qr{tmp-half}, '... and not to a tree being built');

# Inside a snapshot: like the live tree.
$r = $srv->propfind('/snapshots/s1/', 1,
    qq{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="$NS" xmlns:Z="urn:test"><D:prop>}
  . qq{<D:getcontentlength/><M:sha1/><Z:color/><Z:kind/></D:prop></D:propfind>});
is($r->{status}, 207, 'PROPFIND Depth 1 inside s1');
%resp = map { m{<D:href>([^<]*)</D:href>} ? ($1 => $_) : () } split m{</D:response>}, $r->{content};
is_deeply([sort keys %resp], ['/snapshots/s1/', '/snapshots/s1/a.txt', '/snapshots/s1/dir/'],
          'members of s1 (no sidecar folder)');
like($resp{'/snapshots/s1/a.txt'}, qr{sha1>\Q@{[Digest::SHA::sha1_hex("alpha\n")]}\E<},
     'SHA-1 property from the snapshot sidecar');
like($resp{'/snapshots/s1/a.txt'}, qr{>red</}, 'dead property of a file from the snapshot sidecar');
like($resp{'/snapshots/s1/dir/'}, qr{>folder</}, 'dead property of a folder');
$r = $srv->propfind('/snapshots/s1/dir/big.bin', 0,
    qq{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="$NS"><D:prop><M:sha1/></D:prop></D:propfind>});
like($r->{content}, qr{sha1>$big_sha<}, 'SHA-1 of a file in a subfolder');

$r = $srv->get('/snapshots/s1/dir/big.bin');
is($r->{status}, 200, 'GET in a snapshot');
ok($r->{content} eq slurp($big), '... the bytes');
my $etag = $r->{headers}{etag};
my $lm = $r->{headers}{'last-modified'};
$r = $srv->request('HEAD', '/snapshots/s1/dir/big.bin');
is($r->{status}, 200, 'HEAD');
is($r->{headers}{'content-length'}, 256 * 1024 + 5, '... Content-Length');
$r = $srv->get('/snapshots/s1/dir/big.bin', { Range => 'bytes=1000-1999' });
is($r->{status}, 206, 'GET with a range: 206');
ok($r->{content} eq substr(slurp($big), 1000, 1000), '... the range');
is($srv->get('/snapshots/s1/dir/big.bin', { 'If-None-Match' => $etag })->{status}, 304,
   'If-None-Match: 304');
is($srv->get('/snapshots/s1/dir/big.bin', { 'If-Modified-Since' => $lm })->{status}, 304,
   'If-Modified-Since: 304');
is($srv->get('/snapshots/s1/dir/big.bin', { 'If-Match' => '"nope"' })->{status}, 412,
   'If-Match with another tag: 412');
is($srv->get('/snapshots/s9/a.txt')->{status}, 404, 'a missing snapshot: 404');

# ---------------------------------------------------------------- cadaver
{
    mkdir "$tmp/home";
    my $script = "$tmp/cadaver.in";
    spew("$tmp/up.txt", "upload\n");
    spew($script, "ls\ncd dir\nget big.bin $tmp/cad.bin\ncd ..\nput $tmp/up.txt up.txt\nquit\n");
    my $url = $srv->url('/snapshots/s1/');
    my $out = `cd '$tmp' && HOME='$tmp/home' timeout 60 cadaver '$url' < '$script' 2>&1`;
    like($out, qr/a\.txt/, 'cadaver lists a snapshot') or diag($out);
    is(sha1_file("$tmp/cad.bin"), $big_sha, 'cadaver downloads from it');
    like($out, qr/Uploading.*failed.*403/s, 'a cadaver put is refused (403)') or diag($out);
    ok(!-e "$vol/snapshots/s1/up.txt", '... and nothing was stored');
}

# ---------------------------------------------------------------- rclone
{
    local %ENV = (%ENV, RCLONE_CONFIG => "$tmp/rclone.conf",
                  RCLONE_CONFIG_SN_TYPE => 'webdav', RCLONE_CONFIG_SN_URL => $srv->url('/snapshots/'),
                  RCLONE_CONFIG_SN_VENDOR => 'other', HOME => $tmp,
                  XDG_CACHE_HOME => "$tmp/cache", XDG_CONFIG_HOME => "$tmp/config");
    my $out = `timeout 120 rclone --retries 1 --low-level-retries 1 lsf -R sn:s1 2>'$tmp/rclone.err'`;
    is($? >> 8, 0, 'rclone lsf -R of a snapshot exits 0') or diag(slurp("$tmp/rclone.err"));
    is_deeply([sort split /\n/, $out], ['a.txt', 'dir/', 'dir/big.bin'], 'rclone lists it')
        or diag($out);
    $out = `timeout 120 rclone --retries 1 --low-level-retries 1 copy sn:s1 '$tmp/rc' 2>&1`;
    is($? >> 8, 0, 'rclone copy from a snapshot exits 0') or diag($out);
    is(sha1_file("$tmp/rc/dir/big.bin"), $big_sha, 'rclone downloads the bytes');
    is(slurp("$tmp/rc/a.txt"), "alpha\n", '... and the small file');
}

# ---------------------------------------------------------------- restore
is($srv->put('/dav/a.txt', "changed\n")->{status}, 204, 'the live a.txt changes');
is(proppatch('/dav/a.txt', 'color', 'green')->{status}, 207, '... and its property');
$r = $srv->request('COPY', '/snapshots/s1/a.txt', { Destination => $dest->('/dav/a.txt'), Overwrite => 'F' });
is($r->{status}, 412, 'restore onto an existing file with Overwrite: F: 412');
is(slurp("$vol/live/a.txt"), "changed\n", '... the live file stays');
$r = $srv->request('COPY', '/snapshots/s1/a.txt', { Destination => $dest->('/dav/a.txt') });
is($r->{status}, 204, 'restore with Overwrite (default T): 204') or diag($r->{content});
is(slurp("$vol/live/a.txt"), "alpha\n", '... the old bytes are back');
$r = $srv->propfind('/dav/a.txt', 0,
    '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:test"><D:prop><Z:color/></D:prop></D:propfind>');
like($r->{content}, qr{>red</}, '... with the sidecar it had (dead property)');
is((stat "$vol/live/a.txt")[9], (stat "$vol/snapshots/s1/a.txt")[9], '... and its mtime');
{
    # link(2) moves the ctime that a SHA-1 record is bound to: the engine
    # re-binds the live records after linking, and a restore re-binds the
    # copy, so both keep their SHA-1.
    my $q = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>'
          . qq{<M:sha1 xmlns:M="$NS"/></D:prop></D:propfind>};
    like($srv->propfind('/dav/a.txt', 0, $q)->{content}, qr{sha1>[0-9a-f]{40}<},
         'the restored file has its SHA-1');
    like($srv->propfind('/dav/dir/big.bin', 0, $q)->{content}, qr{sha1>$big_sha<},
         'a live file keeps its SHA-1 after a snapshot');
}
$r = $srv->request('COPY', '/snapshots/s1/dir', { Destination => $dest->('/dav/restored'), Depth => 'infinity' });
is($r->{status}, 201, 'restore of a folder to a new name: 201');
is(sha1_file("$vol/live/restored/big.bin"), $big_sha, '... its files');
{
    my $now = listing("$vol/snapshots");
    my %was = map { m{^/s1(/|$)} ? ($_ => $before[0]{$_}) : () } keys %{ $before[0] };
    my %is  = map { m{^/s1(/|$)} ? ($_ => $now->{$_}) : () } keys %$now;
    is_deeply(\%is, \%was, 'restoring changed nothing in the snapshot');
}

# ---------------------------------------------------------------- DELETE
$r = $srv->delete('/snapshots/s2');
is($r->{status}, 204, 'DELETE /snapshots/s2: 204');
ok(!-e "$vol/snapshots/s2" && !-e "$vol/state/snapshots/s2.rec", '... the tree and record are gone');
is($srv->delete('/snapshots/s2')->{status}, 404, 'DELETE of a missing snapshot: 404');
$r = $srv->propfind('/snapshots/', 1);
unlike($r->{content}, qr{/snapshots/s2/}, 'no longer listed');
is(slurp("$vol/snapshots/s1/a.txt"), "alpha\n", 's1 is untouched');

done_testing();
