#!/usr/bin/env perl
# rclone reads the server's hashes through {http://owncloud.org/ns}checksums
# (its webdav backend with vendor = owncloud): `rclone hashsum sha1` equals
# sha1sum of the local files, and after a same-size change made on the
# server side with the same mtime, `rclone check` reports the file, where
# with a vendor that reads no hashes (other) it sees nothing, as size and
# mtime agree: the hash is what catches it.  rclone's uploads with the
# owncloud vendor carry OC-Checksum, which the server checks.  rclone
# check picks MD5 when both sides have it, so the server runs with
# MirrorDAVDigest sha1 md5; `rclone hashsum sha1` reads the SHA-1.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Path qw(make_path);
use POSIX ();
use MirrorDAV::Test qw(slurp spew sha1_file);

plan skip_all => 'rclone is not installed' if system('command -v rclone >/dev/null 2>&1');

# rclone check compares the first hash both sides have, and its owncloud
# vendor reads MD5 and SHA-1 (MD5 first): the server records MD5 too.
my $srv = MirrorDAV::Test->start_server(
    conf_extra => "<Location /dav>\n  MirrorDAVDigest sha1 md5\n</Location>");
my $live = $srv->live;
my $tmp = File::Temp::tempdir('rclone-oc-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $src = "$tmp/src";

# A small tree: nested folders, sizes from 0 B to beyond a 256 KiB buffer.
my %want;
my $mtime = 1_700_000_000;    # whole seconds: what X-OC-Mtime carries back
for my $i (0 .. 24) {
    my $dir = ('', 'a', 'a/b', 'c d')[$i % 4];
    make_path($dir eq "" ? $src : "$src/$dir");
    my $rel = ($dir eq '' ? '' : "$dir/") . "file $i.bin";
    my $size = (0, 1, 1000, 300_000, 70_000)[$i % 5] + $i;
    system("head -c $size /dev/urandom > '$src/$rel'") == 0 or die;
    utime $mtime, $mtime, "$src/$rel";
    $want{$rel} = sha1_file("$src/$rel");
}

my %env = (
    RCLONE_CONFIG           => "$tmp/rclone.conf",   # never ~/.config
    RCLONE_CONFIG_OC_TYPE   => 'webdav',
    RCLONE_CONFIG_OC_URL    => $srv->url('/dav/'),
    RCLONE_CONFIG_OC_VENDOR => 'owncloud',
    HOME                    => $tmp,
    XDG_CACHE_HOME          => "$tmp/cache",
    XDG_CONFIG_HOME         => "$tmp/config",
);

sub rclone {
    my ($extra_env, @args) = @_;
    local @ENV{keys %env} = values %env;
    local @ENV{keys %$extra_env} = values %$extra_env;
    my $log = "$tmp/rclone.log";
    my $out = "$tmp/rclone.out";
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', $out; open STDERR, '>', $log;
        { exec 'timeout', '180', 'rclone', '--retries', '1',
               '--low-level-retries', '1', @args };
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    return ($? >> 8, slurp($out) // '', slurp($log) // '');
}
my %other = (RCLONE_CONFIG_OC_VENDOR => 'other');

my ($rc, $out, $log) = rclone({}, 'copy', '-v', $src, 'oc:tree');
is($rc, 0, 'rclone copy with vendor owncloud (OC-Checksum on every PUT)') or diag $log;
my @puts = grep { /"PUT \/dav\/tree\// } split /\n/, slurp($srv->{run} . '/access.log') // '';
is(scalar(grep { $want{$_} } map { my $r = $_; $r =~ s{^.*?"PUT /dav/tree/(\S+) .*$}{$1}; $r =~ s/%20/ /g; $r } @puts),
   scalar(keys %want), 'every file went up by PUT') if @puts;
for my $rel (sort keys %want) {
    is(sha1_file("$live/tree/$rel"), $want{$rel}, "stored: $rel") or last;
}

# rclone hashsum sha1 reads oc:checksums.
($rc, $out, $log) = rclone({}, 'hashsum', 'sha1', 'oc:tree');
is($rc, 0, 'rclone hashsum sha1') or diag $log;
my %got = map { /^([0-9a-f]{40})  (.+)$/ ? ($2 => $1) : () } split /\n/, $out;
is_deeply(\%got, \%want, 'rclone hashsum sha1 equals sha1sum of the local files') or diag $out;

# With a vendor that reads no hashes, rclone hashsum has nothing.
($rc, $out, $log) = rclone(\%other, 'hashsum', 'sha1', 'oc:tree');
unlike($out, qr/^[0-9a-f]{40}  /m, 'vendor other: no SHA-1 from the server');

($rc, $out, $log) = rclone({}, 'check', $src, 'oc:tree');
is($rc, 0, 'rclone check: no differences') or diag "$out$log";
unlike($log, qr/No common hash|hashes could not be checked/i, '... and it compared hashes for every file') or diag $log;

# A same-size change made on the server side, keeping the mtime: a PUT of
# other bytes of the same length with X-OC-Mtime.
my $victim = 'a/file 1.bin';
my $size = -s "$src/$victim";
my $other_bytes = 'X' x $size;
my $r = $srv->put("/dav/tree/a/file%201.bin", $other_bytes, { 'X-OC-Mtime' => $mtime });
is($r->{status}, 204, 'server-side change: same size, same mtime');
is((stat "$live/tree/$victim")[9], $mtime, '... the mtime kept');
is(-s "$live/tree/$victim", $size, '... the size kept');

($rc, $out, $log) = rclone(\%other, 'check', $src, 'oc:tree');
is($rc, 0, 'vendor other: rclone check misses it (size and mtime agree)') or diag "$out$log";
like($log, qr/No common hash/i, '... it had no hash to compare');

($rc, $out, $log) = rclone({}, 'check', $src, 'oc:tree');
isnt($rc, 0, 'vendor owncloud: rclone check reports a difference');
like($log, qr/\Q$victim\E.*differ|1 differences found/s, '... naming the file') or diag $log;
like($log, qr/1 differences found/, '... and only that one') or diag $log;

done_testing();
