#!/usr/bin/env perl
# RFC 4331 quota (SPEC section 4b; quota.c, sidecar/usage.h):
#  - DAV:quota-available-bytes and DAV:quota-used-bytes on the root and a
#    subcollection, when named (never in allprop), consistent with the
#    limit (MirrorDAVQuota 1M here) and, without a limit, with statvfs;
#  - `rclone about` shows total, used and free;
#  - a PUT past the limit gets 507 naming it and changes nothing (no file,
#    no sidecar, the old version and its sidecar byte-identical): with
#    Content-Length (refused before the body is sent), chunked, and gzip
#    (refused while decoding); an overwrite counts the difference;
#  - DELETE gives the space back; COPY (of files, of a tree) and
#    PATCH-APPLY are counted and refused past the limit, MOVE changes
#    nothing, MOVE over an existing file frees the replaced one;
#  - a COPY past the limit is refused before (one file) or while (a
#    tree) it stages, the bytes written far fewer than the source's, with
#    nothing left behind; with Overwrite the replaced tree counts;
#  - the counter survives a restart, and a volume without one is counted
#    at start;
#  - fsck reports a counter that differs from live/ (both values), and
#    --repair writes the counted value;
#  - kill -9 at random instants during a stream of concurrent writes: the
#    counted value fsck reports is the real total (computed here by
#    walking live/), and after --repair the counter equals it.
#
# MIRRORDAV_QUOTA_CRASH_ROUNDS (default 4) sets the number of kill -9
# rounds; MIRRORDAV_CRASH_SEED repeats a run.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use File::Find ();
use Time::HiRes qw(sleep);
use IO::Compress::Gzip qw(gzip $GzipError);
use POSIX ();
use MirrorDAV::Test qw(slurp spew sha1_file);
use MirrorDAV::RawClient qw(connect_raw send_pieces read_response);

my $ROUNDS = $ENV{MIRRORDAV_QUOTA_CRASH_ROUNDS} // 4;
my $seed   = $ENV{MIRRORDAV_CRASH_SEED} // int(rand(1 << 30));
srand $seed;
note "seed $seed";

my $KiB   = 1024;
my $LIMIT = 1024 * $KiB;
my $admin = "$ENV{MIRRORDAV_BUILD}/mirrordav";
my $tmp   = tempdir('quota-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my $s = MirrorDAV::Test->start_server(
    conf_extra => "<Location /dav>\n    MirrorDAVQuota 1M\n</Location>");
my $live = $s->live;

# The real total, as sidecar/usage.h defines it: apparent sizes of the
# regular files under live/, sidecar folders left out.
sub real_total {
    my ($srv) = @_;
    my $sum = 0;
    File::Find::find({ no_chdir => 1, wanted => sub {
        if (-d $_ && m{/\.mirrordav$}) { $File::Find::prune = 1; return }
        $sum += -s _ if -f $_ && !-l $_;
    } }, $srv->live);
    return $sum;
}

my $QUOTA_PROPS = q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>}
    . q{<D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>};

# (available, used) of PATH; undef for a property not answered.
sub quota {
    my ($srv, $path) = @_;
    my $r = $srv->propfind($path, 0, $QUOTA_PROPS);
    die "PROPFIND $path: $r->{status}" unless $r->{status} == 207;
    my ($avail) = $r->{content} =~ m{quota-available-bytes>(\d+)</};
    my ($used)  = $r->{content} =~ m{quota-used-bytes>(\d+)</};
    return ($avail, $used);
}

sub used { (quota($_[0] // $s, '/dav/'))[1] }

# curl PUT of FILE with extra headers: (status, body).
sub curl_put {
    my ($path, $file, @h) = @_;
    my $out = "$tmp/reply";
    unlink $out;
    open my $fh, '-|', 'curl', '-s', '-o', $out, '-w', '%{http_code}',
        '-H', 'Expect:', (map { ('-H', $_) } @h), '-T', $file, $s->url($path)
        or die "curl: $!";
    my $code = <$fh>;
    close $fh;
    return ($code // 0, slurp($out) // '');
}

open my $rnd, '<:raw', '/dev/urandom' or die;
sub rbytes { my $n = shift; my $b = ''; read($rnd, $b, $n) if $n > 0; $b }

# Snapshot of what a refused write must leave alone: the file, its
# sidecar and every name in the folder and its sidecar folder.
sub state_of {
    my ($dir) = @_;
    my %h;
    for my $d ($dir, "$dir/.mirrordav") {
        opendir my $dh, $d or next;
        for my $n (sort grep { !/^\.\.?$/ } readdir $dh) {
            next if -d "$d/$n";
            $h{"$d/$n"} = sha1_file("$d/$n");
        }
    }
    return \%h;
}

# ------------------------------------------------------------ properties
is(used(), 0, 'a new volume: 0 bytes used (counted at start)');
ok(-f $s->volume . '/state/usage', 'the counter is in state/usage');
is($s->mkcol('/dav/sub/')->{status}, 201, 'MKCOL sub');
is($s->put('/dav/sub/a.bin', rbytes(300 * $KiB))->{status}, 201, 'PUT 300 KiB');
for my $p ('/dav/', '/dav/sub/', '/dav/sub') {
    my ($avail, $used) = quota($s, $p);
    is($used, real_total($s), "$p: quota-used-bytes is the bytes in live/");
    is($avail, $LIMIT - $used, "$p: quota-available-bytes is limit - used");
}
{
    my $r = $s->propfind('/dav/', 0);
    is($r->{status}, 207, 'allprop');
    unlike($r->{content}, qr/quota-/, 'allprop leaves the quota properties out (RFC 4331 3)');
    $r = $s->propfind('/dav/sub/a.bin', 0, $QUOTA_PROPS);
    like($r->{content}, qr{quota-used-bytes/>.*404}s, 'a file does not answer them');
    $r = $s->propfind('/dav/', 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>});
    like($r->{content}, qr/quota-available-bytes/, 'propname lists them');
    $r = $s->request('PROPPATCH', '/dav/', { 'Content-Type' => 'application/xml' },
        q{<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:quota-used-bytes>0</D:quota-used-bytes></D:prop></D:set></D:propertyupdate>});
    like($r->{content}, qr/403|409/, 'PROPPATCH cannot set quota-used-bytes');
    is(used(), 300 * $KiB, '... and it is unchanged');
}

# --------------------------------------------------------------- rclone
SKIP: {
    skip 'rclone is not installed', 3 if system('command -v rclone >/dev/null 2>&1');
    local $ENV{RCLONE_CONFIG} = "$tmp/rclone.conf";
    local $ENV{RCLONE_CONFIG_MD_TYPE} = 'webdav';
    local $ENV{RCLONE_CONFIG_MD_URL} = $s->url('/dav/');
    local $ENV{RCLONE_CONFIG_MD_VENDOR} = 'other';
    local $ENV{HOME} = $tmp;
    my $json = `timeout 60 rclone about --json md: 2>&1`;
    my %a = $json =~ /"(total|used|free)":\s*(\d+)/g;
    is($a{used}, 300 * $KiB, 'rclone about: used') or diag($json);
    is($a{free}, $LIMIT - 300 * $KiB, 'rclone about: free');
    is($a{total}, $LIMIT, 'rclone about: total is the limit');
}

# ----------------------------------------------------- PUT past the limit
my $sub = "$live/sub";
my $before = state_of($sub);
my $a_sha = sha1_file("$sub/a.bin");
{
    # 800 KiB with Content-Length, 724 KiB left: refused before the body.
    # Only the head is sent; the answer must come without the body.
    my $sock = connect_raw($s->port);
    send_pieces($sock, ["PUT /dav/sub/b.bin HTTP/1.1\r\nHost: x\r\n"
        . "Content-Length: " . (800 * $KiB) . "\r\n\r\n", 0]);
    my $buf = '';
    my $resp = eval { read_response($sock, \$buf) };
    close $sock;
    is($resp && $resp->[0], 507, 'Content-Length past the limit: 507 before the body is sent')
        or diag($@);
    like($resp && $resp->[1], qr/MirrorDAVQuota 1048576 bytes/, 'the body names the limit');
}
{
    # Finder announces its chunked body's length: refused before it.
    my $sock = connect_raw($s->port);
    send_pieces($sock, ["PUT /dav/sub/b.bin HTTP/1.1\r\nHost: x\r\n"
        . "Transfer-Encoding: chunked\r\nX-Expected-Entity-Length: " . (800 * $KiB)
        . "\r\n\r\n", 0]);
    my $buf = '';
    my $resp = eval { read_response($sock, \$buf) };
    close $sock;
    is($resp && $resp->[0], 507, 'X-Expected-Entity-Length past the limit: 507 before the body')
        or diag($@);
}
{
    my $f = "$tmp/800k";
    spew($f, rbytes(800 * $KiB));
    my ($code, $body) = curl_put('/dav/sub/b.bin', $f, 'Transfer-Encoding: chunked');
    is($code, 507, 'chunked body past the limit: 507');
    like($body, qr/quota/, '... naming the quota');
    spew("$tmp/zeros", "\0" x (800 * $KiB));
    gzip("$tmp/zeros" => "$tmp/zeros.gz") or die $GzipError;
    ok(-s "$tmp/zeros.gz" < 10 * $KiB, 'the gzip body is small on the wire');
    ($code, $body) = curl_put('/dav/sub/b.bin', "$tmp/zeros.gz", 'Content-Encoding: gzip');
    is($code, 507, 'gzip body decoding past the limit: 507');
    # The same over the existing file: 300 + 800 > 1024 + 300? No: the
    # overwrite needs 800 - 300 = 500 more, which fits; 1100 KiB does not.
    spew("$tmp/1100k", rbytes(1100 * $KiB));
    ($code, $body) = curl_put('/dav/sub/a.bin', "$tmp/1100k");
    is($code, 507, 'overwrite past the limit: 507');
    is_deeply(state_of($sub), $before, 'nothing changed: no file, no sidecar, the old version and its sidecar intact');
    is(sha1_file("$sub/a.bin"), $a_sha, 'the old version is served');
    is(used(), 300 * $KiB, 'the counter is unchanged');
}
{
    # The overwrite counts the difference: 1000 KiB over 300 KiB needs
    # 700 KiB, and 724 KiB are left.
    my $r = $s->put('/dav/sub/a.bin', rbytes(1000 * $KiB));
    is($r->{status}, 204, 'overwrite 300 -> 1000 KiB fits (the difference counts)');
    is(used(), 1000 * $KiB, 'used 1000 KiB');
    is((quota($s, '/dav/sub/'))[0], 24 * $KiB, '24 KiB available');
    $r = $s->put('/dav/sub/c.bin', rbytes(25 * $KiB));
    is($r->{status}, 507, '25 KiB more: 507');
    ok(!-e "$sub/c.bin", 'no file');
    is($s->put('/dav/sub/a.bin', rbytes(100))->{status}, 204, 'shrinking is always allowed');
    is(used(), 100, 'used 100 bytes');
}

# -------------------------------------------------------------- DELETE
is($s->put('/dav/sub/big.bin', rbytes(900 * $KiB))->{status}, 201, 'PUT 900 KiB');
is($s->put('/dav/sub/more.bin', rbytes(200 * $KiB))->{status}, 507, 'no room for 200 KiB');
is($s->delete('/dav/sub/big.bin')->{status}, 204, 'DELETE 900 KiB');
is(used(), 100, 'the space is given back');
is($s->put('/dav/sub/more.bin', rbytes(200 * $KiB))->{status}, 201, 'now 200 KiB fit');
is(used(), 100 + 200 * $KiB, 'counted');

# ---------------------------------------------------------- COPY / MOVE
sub dav {
    my ($m, $from, $to, %h) = @_;
    return $s->request($m, $from, { Destination => $s->url($to), %h })->{status};
}
my $u = used();
is(dav('COPY', '/dav/sub/more.bin', '/dav/c1.bin'), 201, 'COPY 200 KiB');
is(used(), $u += 200 * $KiB, 'COPY counted');
is(dav('MOVE', '/dav/c1.bin', '/dav/sub/m1.bin'), 201, 'MOVE');
is(used(), $u, 'MOVE within the volume changes nothing');
is(dav('COPY', '/dav/sub/', '/dav/sub2/'), 201, 'COPY of a tree');
is(used(), $u *= 2, 'the tree is counted') or diag(real_total($s));
is(used(), real_total($s), 'counter and live/ agree');
{
    my $b2 = state_of($live);
    is(dav('COPY', '/dav/sub/', '/dav/sub3/'), 507, 'COPY of a tree past the limit: 507');
    ok(!-e "$live/sub3", 'nothing copied');
    is_deeply(state_of($live), $b2, 'the root and its sidecars unchanged');
    is(used(), $u, 'the counter unchanged');
}
is(dav('MOVE', '/dav/sub2/m1.bin', '/dav/sub2/more.bin', Overwrite => 'T'), 204,
   'MOVE over an existing file');
is(used(), $u -= 200 * $KiB, 'the replaced file left the count');
is(dav('COPY', '/dav/sub/a.bin', '/dav/sub2/more.bin', Overwrite => 'T'), 204,
   'COPY over an existing file');
is(used(), $u = $u - 200 * $KiB + 100, 'counted as the difference');
is(used(), real_total($s), 'counter and live/ agree');

# ------------------------------------------ COPY refused while staging
# A COPY past the limit is refused before (one file) or while (a tree)
# it stages, not after staging all of it: the bytes the server's
# processes wrote during the refused COPY (wchar of /proc/PID/io, which
# counts write(2) and copy_file_range(2)) are far fewer than the source's.
# The bound is limit - used + the tree an Overwrite replaces, so a COPY
# that fits only thanks to the replaced bytes still succeeds.
{
    # wchar summed over the server's processes, and their pids (undef if
    # unreadable: the test runs as root, the server does not).
    my $wchar = sub {
        my ($sum, @pids) = (0);
        for my $pid ($s->pid, $s->children) {
            open my $fh, '<', "/proc/$pid/io" or return;
            my ($w) = join('', <$fh>) =~ /^wchar:\s*(\d+)/m or return;
            $sum += $w;
            push @pids, $pid;
        }
        return ($sum, join ',', sort @pids);
    };
    # (status, body, bytes written or undef) of a COPY.
    my $copy = sub {
        my ($from, $to, %h) = @_;
        my ($w0, $p0) = $wchar->();
        my $r = $s->request('COPY', $from, { Destination => $s->url($to), %h });
        my ($w1, $p1) = $wchar->();
        my $written = defined $w0 && defined $w1 && $p0 eq $p1 ? $w1 - $w0 : undef;
        return ($r->{status}, $r->{content}, $written);
    };
    my $stages = sub { scalar(() = glob("$live/.mirrordav/.stage-*")) };

    my $u0 = used();
    my $left0 = $LIMIT - $u0;
    # Source tree S = 10 files of 4.9% of what is left (each alone fits
    # in what will be left, so the refusal needs the staged sum); the
    # destination D, one file of 45%.  Then 6% is left: S does not fit
    # on a new name, and S over D needs S - D = 4%, which fits.
    my $f = int($left0 * 0.049);
    my $S = 10 * $f;
    my $D = int($left0 * 0.45);
    is($s->mkcol('/dav/big/')->{status}, 201, 'MKCOL big');
    is($s->put("/dav/big/f$_.bin", rbytes($f))->{status}, 201, "PUT big/f$_.bin") for 0 .. 9;
    is($s->mkcol('/dav/qd/')->{status}, 201, 'MKCOL qd');
    is($s->put('/dav/qd/d.bin', rbytes($D))->{status}, 201, 'PUT qd/d.bin');
    is($s->mkcol('/dav/qs/')->{status}, 201, 'MKCOL qs');
    is($s->put('/dav/qs/s.bin', 'small')->{status}, 201, 'PUT qs/s.bin');
    my $u1 = used();
    my $left1 = $LIMIT - $u1;
    ok($f < $left1 && $S > $left1 && $S - $D <= $left1,
       "sizes: each file ($f) fits in what is left ($left1), the tree ($S) does not, over D ($D) it does");

    my $root = state_of($live);
    my $qs = state_of("$live/qs");
    my ($code, $body, $written) = $copy->('/dav/big/', '/dav/big2/');
    is($code, 507, 'COPY of a tree larger than what is left: 507');
    like($body, qr/MirrorDAVQuota/, '... naming the limit');
    ok(!-e "$live/big2", '... nothing at the destination');
    is($stages->(), 0, '... no staging folder left');
    is_deeply(state_of($live), $root, '... the parent and its sidecars unchanged');
    is(used(), $u1, '... the counter unchanged');
  SKIP: {
        skip 'no /proc/PID/io for the server', 1 unless defined $written;
        ok($written < $S / 2, "... the staging stopped early: $written bytes written for a $S-byte tree");
    }

    ($code, $body, $written) = $copy->('/dav/qd/d.bin', '/dav/d2.bin');
    is($code, 507, 'COPY of one file larger than what is left: 507');
    like($body, qr/MirrorDAVQuota/, '... naming the limit');
    ok(!-e "$live/d2.bin", '... nothing at the destination');
    is($stages->(), 0, '... no staging folder left');
    is(used(), $u1, '... the counter unchanged');
  SKIP: {
        skip 'no /proc/PID/io for the server', 1 unless defined $written;
        ok($written < $D / 2, "... refused before copying: $written bytes written for a $D-byte file");
    }

    ($code, $body) = $copy->('/dav/big/', '/dav/qs/', Overwrite => 'T');
    is($code, 507, 'COPY with Overwrite over a small tree, past the limit: 507');
    is_deeply(state_of("$live/qs"), $qs, '... the destination and its sidecars intact');
    is($stages->(), 0, '... no staging folder left');
    is(used(), $u1, '... the counter unchanged');

    ($code, $body) = $copy->('/dav/big/', '/dav/qd/', Overwrite => 'T');
    is($code, 204, 'COPY with Overwrite that fits only thanks to the replaced tree: 204')
        or diag($body);
    is(sha1_file("$live/qd/f3.bin"), sha1_file("$live/big/f3.bin"), '... copied');
    ok(!-e "$live/qd/d.bin", '... the old destination replaced');
    is(used(), $u1 - $D + $S, '... counted as the difference');
    is(used(), real_total($s), '... counter and live/ agree');
    is($stages->(), 0, '... no staging folder left');

    is($s->delete($_)->{status}, 204, "DELETE $_") for '/dav/big/', '/dav/qd/', '/dav/qs/';
    is(used(), $u0, 'the space is given back');
}

# ----------------------------------------------------------- PATCH-APPLY
SKIP: {
    skip 'rdiff is not installed', 6 if system('command -v rdiff >/dev/null 2>&1');
    # The file more.bin (200 KiB) grows by GROW bytes at its end.
    my $patch = sub {
        my ($grow) = @_;
        my $old = "$tmp/old";
        system('cp', "$sub/more.bin", $old) == 0 or die;
        unlink "$tmp/sig", "$tmp/delta";
        my $new = "$tmp/new";
        spew($new, slurp($old) . rbytes($grow));
        my $n = -s $new;
        system("rdiff signature $old $tmp/sig && rdiff delta $tmp/sig $new $tmp/delta") == 0 or die;
        my $code = `curl -s -o $tmp/reply -w '%{http_code}' -H Expect: -X PATCH-APPLY -H 'Content-Range: bytes 0-@{[$n-1]}/$n' --data-binary \@$tmp/delta ${\$s->url('/dav/sub/more.bin')}`;
        return ($code, slurp("$tmp/reply") // '', sha1_file($new));
    };
    my $left = $LIMIT - used();
    my $sc = "$sub/.mirrordav/more.bin.db";
    my ($sha_before, $db_before) = (sha1_file("$sub/more.bin"), sha1_file($sc));
    my ($code, $body) = $patch->($left + 1);
    is($code, 507, 'PATCH-APPLY growing past the limit: 507');
    like($body, qr/MirrorDAVQuota/, '... naming the limit');
    is(sha1_file("$sub/more.bin"), $sha_before, 'the file is unchanged');
    is(sha1_file($sc), $db_before, 'its sidecar is unchanged');
    my $sha;
    ($code, $body, $sha) = $patch->($left - 10);
    is($code, 204, 'PATCH-APPLY growing within the limit: 204') or diag($body);
    is(used(), real_total($s), 'counted: counter and live/ agree');
}

# ------------------------------------- SabreDAV PATCH, PUT with Content-Range
# The other partial updates share PATCH-APPLY's commit path, and so its
# quota check: growing past the limit is 507 with nothing changed, within
# it counted exactly.
for my $d (['PATCH', 'Content-Type: application/x-sabredav-partialupdate', 'X-Update-Range: append'],
           ['PUT', 'Content-Range: bytes %d-%d/*']) {
    my ($method, @h) = @$d;
    my $left = $LIMIT - used();
    my $sc = "$sub/.mirrordav/more.bin.db";
    my $size = -s "$sub/more.bin";
    my ($sha_before, $db_before) = (sha1_file("$sub/more.bin"), sha1_file($sc));
    my $send = sub {
        my ($n) = @_;
        spew("$tmp/piece", rbytes($n));
        my @hh = map { sprintf($_, $size, $size + $n - 1) } @h;
        my $hdr = join ' ', map { "-H '$_'" } @hh;
        my $code = `curl -s -o $tmp/reply -w '%{http_code}' -H Expect: -X $method $hdr --data-binary \@$tmp/piece ${\$s->url('/dav/sub/more.bin')}`;
        return ($code, slurp("$tmp/reply") // '');
    };
    my ($code, $body) = $send->($left + 1);
    is($code, 507, "$method partial update growing past the limit: 507");
    like($body, qr/MirrorDAVQuota/, '... naming the limit');
    is(sha1_file("$sub/more.bin"), $sha_before, '... the file is unchanged');
    is(sha1_file($sc), $db_before, '... its sidecar is unchanged');
    my $grow = int($left / 2) or BAIL_OUT('no room left under the limit');
    ($code, $body) = $send->($grow);
    like($code, qr/^20[04]$/, "$method partial update within the limit") or diag($body);
    is(-s "$sub/more.bin", $size + $grow, '... the file grew');
    is(used(), real_total($s), '... counted: counter and live/ agree');
}

# --------------------------------------------------------- restart, start
{
    my $before_used = used();
    $s->restart;
    is(used(), $before_used, 'the counter survives a restart');
    $s->stop;
    unlink $s->volume . '/state/usage' or die;
    my $out = `$admin fsck --volume ${\$s->volume} 2>&1`;
    is($? >> 8, 0, 'fsck: a missing counter is no problem') or diag($out);
    like($out, qr/no counter \(the server writes it at start\)/, '... it says so');
    ok(!-e $s->volume . '/state/usage', '... and writes none without --repair');
    $s->restart;
    is(used(), real_total($s), 'a volume without a counter is counted at start');
}
{
    # mirrordav volume init counts what live/ already holds.
    my $v = "$tmp/initvol";
    mkdir $v; mkdir "$v/live"; mkdir "$v/live/d";
    spew("$v/live/d/x", 'y' x 12345);
    mkdir "$v/live/d/.mirrordav";
    spew("$v/live/d/.mirrordav/x.db", 'z' x 999);
    my $out = `$admin volume init $v 2>&1`;
    is($? >> 8, 0, 'volume init') or diag($out);
    like(slurp("$v/state/usage") // '', qr/used=0*12345 /, 'volume init writes the counter: 12345 bytes');
}

# --------------------------------------------------------------- fsck
{
    my $out = `$admin fsck --volume ${\$s->volume} 2>&1`;
    is($? >> 8, 0, 'fsck: clean') or diag($out);
    like($out, qr/usage \d+ bytes, as counted/, 'fsck says the counter agrees');
    # A file removed behind the server's back: the counter is now high.
    my $was = used();
    my $gone = -s "$sub/more.bin";
    unlink "$sub/more.bin" or die;
    my $real = real_total($s);
    $out = `$admin fsck --volume ${\$s->volume} 2>&1`;
    is($? >> 8, 1, 'fsck: a drift is a problem');
    like($out, qr{state/usage\tusage-drift\treported \(recorded $was, counted $real\)},
         'fsck reports the recorded and the counted value') or diag($out);
    is(used(), $was, 'without --repair the counter is unchanged');
    $out = `$admin fsck --repair --volume ${\$s->volume} 2>&1`;
    is($? >> 8, 0, 'fsck --repair') or diag($out);
    like($out, qr{usage-drift\trecounted \(recorded $was, counted $real\)}, '... recounts');
    is(used(), $real, 'the counter is the real total');
}

{
    # A torn counter is unknown: not answered, and with a limit nothing
    # that grows the volume is accepted until fsck --repair.
    my $real = real_total($s);
    spew($s->volume . '/state/usage', "mirrordav-usage 1 used=0000");
    my ($avail, $used) = quota($s, '/dav/');
    ok(!defined $used, 'an unreadable counter: quota-used-bytes not answered');
    is($avail, 0, '... and nothing available under the limit');
    my $r = $s->put('/dav/sub/new.bin', 'x' x 100);
    is($r->{status}, 507, 'a PUT that grows the volume: 507');
    like($r->{content}, qr/usage counter .* unreadable.*fsck --repair/s, '... naming the cause and the fix');
    ok(!-e "$sub/new.bin", '... nothing stored');
    is($s->delete('/dav/sub/a.bin')->{status}, 204, 'DELETE still works');
    $real = real_total($s);
    my $out = `$admin fsck --volume ${\$s->volume} 2>&1`;
    like($out, qr{usage-drift\treported \(recorded unknown, counted $real\)}, 'fsck reports it unknown') or diag($out);
    $out = `$admin fsck --repair --volume ${\$s->volume} 2>&1`;
    is($? >> 8, 0, 'fsck --repair') or diag($out);
    is(used(), $real, 'the counter is back');
    is($s->put('/dav/sub/new.bin', 'x' x 100)->{status}, 201, 'and writes are accepted again');
}

# ------------------------------------------------------ kill -9 rounds
# A server without a limit, writes from 4 clients (PUT of 0-256 KiB,
# overwrite, DELETE, COPY, MOVE), killed at a random instant.
my $c = MirrorDAV::Test->start_server(fsync => 'Off');
{
    # Without a limit, available is the file system's (statvfs f_bavail
    # for the server's user); df reads the same figure.  Other writers
    # share the disk: within 256 MiB.
    my ($avail, $used) = quota($c, '/dav/');
    my ($df) = `df -B1 --output=avail ${\$c->live}` =~ /(\d+)\s*$/;
    ok(abs($avail - $df) < 256 << 20, "no limit: available is statvfs's ($avail vs df $df)");
    is($used, 0, 'used 0');
}
sub writer {
    my ($srv, $id) = @_;
    my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
    my $u = $srv->url('/dav/');
    for (my $i = 0; ; $i++) {
        my $n = "w$id-" . int(rand(12));
        my $m = int rand 10;
        if ($m < 5) {
            $http->request('PUT', "$u$n", { content => 'x' x int(rand(256 * $KiB)) });
        }
        elsif ($m < 7) {
            $http->request('DELETE', "$u$n");
        }
        elsif ($m < 9) {
            $http->request('COPY', "$u$n", { headers => { Destination => "$u$n-c" . int(rand(3)) } });
        }
        else {
            $http->request('MOVE', "$u$n", { headers => { Destination => "$u" . "w$id-" . int(rand(12)), Overwrite => 'T' } });
        }
    }
}
my $drifted = 0;
for my $round (1 .. $ROUNDS) {
    my @pids;
    for my $id (1 .. 4) {
        my $pid = fork // die;
        if (!$pid) { writer($c, $id); POSIX::_exit(0) }
        push @pids, $pid;
    }
    sleep(0.3 + rand(1.2));
    $c->crash;
    kill 'KILL', @pids;
    waitpid($_, 0) for @pids;
    my $real = real_total($c);
    my $out = `$admin fsck --volume ${\$c->volume} 2>&1`;
    my $counted;
    if ($out =~ /usage-drift\treported \(recorded (\w+), counted (\d+)\)/) {
        $drifted++;
        $counted = $2;
        note "round $round: recorded $1, counted $2";
    }
    elsif ($out =~ /usage (\d+) bytes, as counted/) {
        $counted = $1;
    }
    is($counted, $real, "round $round: fsck counts the real total ($real)") or diag($out);
    $out = `$admin fsck --repair --volume ${\$c->volume} 2>&1`;
    like($out, qr/usage \d+ bytes, as counted|usage-drift\trecounted/, "round $round: fsck --repair") or diag($out);
    $c->restart;
    # --repair may have finished an interrupted MOVE, which takes the old
    # destination out of live/: counted again.
    is(used($c), real_total($c), "round $round: after --repair the counter is the real total");
}
note "$drifted of $ROUNDS rounds left a drift for fsck to repair";

done_testing;
