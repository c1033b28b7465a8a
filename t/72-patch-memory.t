#!/usr/bin/env perl
# PATCH-APPLY memory (SPEC 11): the serving child's RSS stays flat (within
# 10 MiB) through a large PATCH-APPLY whose delta is mostly literal data
# (new random bytes), sent plain and gzip-encoded.  The body streams
# through the patch job; neither the delta nor the file is held in memory.
#
# MIRRORDAV_PATCH_MEMORY_SIZE (default 128 MiB, for the run time of rdiff
# delta) sets the size; the issue's
# figure is 1 GiB (1073741824).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);
use MirrorDAV::Test qw(sha1_file);

plan skip_all => 'rdiff is not installed' if system('command -v rdiff >/dev/null 2>&1');
my $SIZE = $ENV{MIRRORDAV_PATCH_MEMORY_SIZE} // 128 << 20;
my $tmp = tempdir('patch-mem-XXXXXX', TMPDIR => 1, CLEANUP => 1);
# One child serving with one thread set, so that its RSS is the request's.
my $s = MirrorDAV::Test->start_server(fsync => 'Off', conf_extra => "StartServers 1\nMinSpareThreads 1\nMaxSpareThreads 64\nServerLimit 1\n");

sub rss_kb {
    my $max = 0;
    for my $pid ($s->children) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) { $max = $1 if /^VmRSS:\s+(\d+)/ && $1 > $max }
    }
    return $max;
}

system("head -c $SIZE /dev/urandom > $tmp/old") == 0 or die;
system('curl', '-s', '-o', '/dev/null', '-T', "$tmp/old", $s->url('/dav/m.bin')) == 0 or die;
system("head -c $SIZE /dev/urandom > $tmp/new") == 0 or die;
system("rdiff signature -b 65536 $tmp/old $tmp/sig && rdiff delta $tmp/sig $tmp/new $tmp/delta") == 0 or die;
system("gzip -1 -c $tmp/delta > $tmp/delta.gz") == 0 or die;
my $want = sha1_file("$tmp/new");

for my $case (['plain', "$tmp/delta", []], ['gzip', "$tmp/delta.gz", ['-H', 'Content-Encoding: gzip']]) {
    my ($name, $body, $h) = @$case;
    # A small request first, so that the child's pools and buffers exist.
    system('curl', '-s', '-o', '/dev/null', $s->url('/dav/m.bin'), '-r', '0-10');
    my $before = rss_kb();
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        exec 'curl', '-s', '-o', "$tmp/reply", '-w', '%{http_code}', '-H', 'Expect:', '-X', 'PATCH-APPLY',
            '-H', "Content-Range: bytes 0-" . ($SIZE - 1) . "/$SIZE", '-H', 'FileTruncate: true',
            @$h, '--limit-rate', '400M', '--data-binary', "\@$body", $s->url('/dav/m.bin');
        exit 127;
    }
    my $peak = $before;
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        my $r = rss_kb();
        $peak = $r if $r > $peak;
        sleep 0.05;
    }
    is($?, 0, "$name: curl ran");
    is(sha1_file($s->live . '/m.bin'), $want, "$name: the file is the new version");
    cmp_ok($peak - $before, '<', 10 * 1024, "$name: the child's RSS stayed within 10 MiB ("
        . int(($peak - $before) / 1024) . " MiB growth)");
    system('curl', '-s', '-o', '/dev/null', '-T', "$tmp/old", $s->url('/dav/m.bin')) == 0 or die;
}

done_testing();
