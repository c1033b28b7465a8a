#!/usr/bin/env perl
# PATCH-APPLY under kill -9, readers and a racing hash worker (SPEC 5):
#  - kill -9 of httpd at random instants during PATCH-APPLYs to a large
#    file, on the default volume (ext4 here: the journalled in-place path)
#    and on a loop-mounted XFS with reflink (the clone path; needs root,
#    skipped otherwise): after each restart the file is exactly the old or
#    the new version of the request in flight, no journal file is left, and
#    the SHA-1 property is the file's or pending, never another value;
#  - the journalled in-place phase killed (strace's fault injection sends
#    SIGKILL) at chosen system calls: recovery completes the patch;
#  - a GET loop during in-place PATCH-APPLYs sees only whole versions;
#  - two PATCH-APPLYs in quick succession: the recorded SHA-1 ends equal to
#    the final file's, and a stale store by the worker was refused (logged).
#
# MIRRORDAV_PATCH_CRASH_ROUNDS (default 8) rounds per file system on a
# file of MIRRORDAV_PATCH_CRASH_SIZE bytes (default 64 MiB); the issue's
# soak is ROUNDS=100 SIZE=268435456.  MIRRORDAV_CRASH_SEED repeats a run.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use File::Copy qw(copy);
use Time::HiRes qw(sleep time);
use Digest::SHA;
use Fcntl qw(:flock);
use MirrorDAV::Test qw(slurp spew sha1_file);
use MirrorDAV::CrashTree qw(crash_server);

plan skip_all => 'rdiff is not installed' if system('command -v rdiff >/dev/null 2>&1');

my $ROUNDS = $ENV{MIRRORDAV_PATCH_CRASH_ROUNDS} // 8;
my $SIZE   = $ENV{MIRRORDAV_PATCH_CRASH_SIZE}   // 64 << 20;
my $seed   = $ENV{MIRRORDAV_CRASH_SEED} // int(rand(1 << 30));
srand $seed;
note "seed $seed, $ROUNDS rounds on $SIZE bytes";
my $tmp = tempdir('patch-crash-XXXXXX', TMPDIR => 1, CLEANUP => 1);

open my $rnd, '<:raw', '/dev/urandom' or die;
sub rbytes { my $n = shift; my $b = ''; read($rnd, $b, $n) if $n > 0; $b }

sub prop_sha1 {
    my ($s, $path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>});
    return $1 if $r->{content} =~ m{<lp\d+:sha1>([0-9a-f]{40})</lp\d+:sha1>};
    return 'pending' if $r->{content} =~ m{<lp(\d+):sha1 lp\1:pending="true"/>};
    return '';
}

sub curl_patch {
    my ($s, $path, $delta, $S, $E, $T) = @_;
    return ('curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Expect:',
            '-X', 'PATCH-APPLY', '-H', "Content-Range: bytes $S-$E/$T",
            '--data-binary', "\@$delta", $s->url($path));
}

# The next version of the file at LOCAL: LEN bytes of new data at S (the
# tail kept).  Returns (S, E, delta path, new version's path, its SHA-1).
sub next_version {
    my ($local, $size, $maxlen, $minlen) = @_;
    my $len = ($minlen // 1) + int rand($maxlen - ($minlen // 1) + 1);
    $len = $size if $len > $size;
    my $S = int rand($size - $len + 1);
    my $O = rbytes($len);
    spew("$tmp/O", $O);
    unlink "$tmp/sig", "$tmp/delta";
    system('rdiff', 'signature', '-b', '65536', $local, "$tmp/sig") == 0 or die 'rdiff signature';
    system('rdiff', 'delta', "$tmp/sig", "$tmp/O", "$tmp/delta") == 0 or die 'rdiff delta';
    copy($local, "$tmp/next") or die;
    open my $fh, '+<:raw', "$tmp/next" or die;
    sysseek($fh, $S, 0);
    syswrite($fh, $O) == $len or die;
    close $fh;
    return ($S, $S + $len - 1, "$tmp/delta", "$tmp/next", sha1_file("$tmp/next"));
}

# Pids of processes with a descriptor on PATH, or on a file whose path
# starts with PREFIX.
sub holders {
    my ($path, $prefix) = @_;
    my %pids;
    for my $fd (glob '/proc/[0-9]*/fd/*') {
        my $to = readlink $fd // next;
        my ($pid) = $fd =~ m{^/proc/(\d+)/} or next;
        next if $pid == $$;
        $pids{$pid} = 1 if $to eq $path || index($to, $prefix) == 0;
    }
    return keys %pids;
}

sub crash_rounds {
    my ($s, $label) = @_;
    my $live = $s->live;
    my $local = "$tmp/current";
    system("head -c $SIZE /dev/urandom > $local") == 0 or die;
    system('curl', '-s', '-o', '/dev/null', '-T', $local, $s->url('/dav/big.bin')) == 0 or die;
    my $cur = sha1_file($local);
    is(sha1_file("$live/big.bin"), $cur, "$label: the file is in place");
    my %outcome = (old => 0, new => 0);
    # One request timed without a kill: the kills fall anywhere in it.
    my $span;
    {
        my ($S, $E, $delta, $next, $new) = next_version($local, $SIZE, 16 << 20);
        my $t0 = time;
        system(join(' ', map { "'$_'" } curl_patch($s, '/dav/big.bin', $delta, $S, $E, $SIZE)) . ' >/dev/null') == 0 or die;
        $span = time - $t0;
        copy($next, $local) or die;
        $cur = $new;
        note(sprintf "$label: a PATCH-APPLY takes %.3f s", $span);
    }
    for my $round (1 .. $ROUNDS) {
        my ($S, $E, $delta, $next, $new) = next_version($local, $SIZE, 16 << 20);
        my $pid = fork // die;
        if (!$pid) {
            open STDOUT, '>', '/dev/null';
            { exec curl_patch($s, '/dav/big.bin', $delta, $S, $E, $SIZE) };
            POSIX::_exit(127);
        }
        sleep rand(1.2 * $span);
        crash_server($s);
        waitpid $pid, 0;
        $s->restart;
        my $now = sha1_file("$live/big.bin");
        my $which = $now eq $cur ? 'old' : $now eq $new ? 'new' : 'neither';
        $outcome{$which}++;
        is($which ne 'neither' ? 1 : 0, 1, "$label round $round (S=$S E=$E): old or new, never a mix")
            or last;
        if ($which eq 'new') {
            copy($next, $local) or die;
            $cur = $new;
        }
        opendir my $d, $s->volume . '/state' or die;
        my @left = grep { /^patch-/ } readdir $d;
        is("@left", '', "$label round $round: no journal file left");
        my $h = prop_sha1($s, '/dav/big.bin');
        ok($h eq $cur || $h eq 'pending', "$label round $round: sha1 property right or pending")
            or diag("got '$h', file $cur");
    }
    note("$label: " . join(', ', map { "$_ $outcome{$_}" } sort keys %outcome));
    # In the end the worker computes the hash of the final file.
    my ($h, $deadline) = ('', time + 30);
    while (time < $deadline) {
        $h = prop_sha1($s, '/dav/big.bin');
        last if $h ne 'pending';
        sleep 0.2;
    }
    is($h, $cur, "$label: the worker recorded the final file's SHA-1");
    my $log = $s->error_log;
    my $replayed = () = $log =~ /interrupted PATCH-APPLY completed/g;
    note("$label: $replayed in-place patches completed by recovery");
    return $replayed;
}

# ------------------------------------------------------- ext4: in place
{
    # fsync on: the in-place phase (apply, fsync) is then long enough for
    # the kills to land in it now and then.
    my $s = MirrorDAV::Test->start_server();
    my $fs = `stat -f -c %T '${\$s->volume}'`;
    chomp $fs;
    note("default volume on $fs");
    my $replayed = crash_rounds($s, "default volume ($fs)");
    if ($fs =~ /ext/) {
        # Not guaranteed by random kills, but they land in the journalled
        # phase in most runs; the count is printed above.
        note("journal replays seen: $replayed");
    }

    # ------------------------------------------------ readers: GET loop
    my $size = 16 << 20;
    my $local = "$tmp/reader";
    system("head -c $size /dev/urandom > $local") == 0 or die;
    system('curl', '-s', '-o', '/dev/null', '-T', $local, $s->url('/dav/read.bin')) == 0 or die;
    my %versions = (sha1_file($local) => 1);
    my $out = "$tmp/gets";
    my $reader = fork // die;
    if (!$reader) {
        open my $o, '>', $out or die;
        $o->autoflush(1);
        my $stop = 0;
        local $SIG{TERM} = sub { $stop = 1 };
        until ($stop) {
            my $sum = `curl -s ${\$s->url('/dav/read.bin')} | sha1sum`;
            print $o ((split ' ', $sum)[0], "\n") if $sum;
        }
        POSIX::_exit(0);
    }
    for my $i (1 .. 20) {
        my ($S, $E, $delta, $next, $new) = next_version($local, $size, 8 << 20);
        open my $c, '-|', curl_patch($s, '/dav/read.bin', $delta, $S, $E, $size) or die;
        my $code = <$c>;
        close $c;
        $code == 204 or diag("PATCH-APPLY $i: $code");
        copy($next, $local) or die;
        $versions{$new} = 1;
    }
    sleep 0.3;
    kill 'TERM', $reader;
    waitpid $reader, 0;
    my @seen = split /\n/, slurp($out) // '';
    my @bad = grep { !$versions{$_} } @seen;
    cmp_ok(scalar @seen, '>=', 5, 'the GET loop ran (' . scalar(@seen) . ' GETs)');
    is(scalar @bad, 0, 'every GET during in-place patches returned a whole version');

    # ------------------------------ two patches, the first hash goes stale
    my $big = "$tmp/stale";
    my $STALE = 128 << 20;
    system("head -c $STALE /dev/urandom > $big") == 0 or die;
    system('curl', '-s', '-o', '/dev/null', '-T', $big, $s->url('/dav/stale.bin')) == 0 or die;
    my $refused = 0;
    for my $try (1 .. 5) {
        my $before = () = $s->error_log =~ /stale store refused/g;
        # Both deltas made first, so that the second request follows the
        # first at once, while the worker is hashing the first version.
        my @req;
        for my $k (1 .. 2) {
            my ($S, $E, $delta, $next) = next_version($big, $STALE, 4096);
            rename $delta, "$delta.$k" or die;
            copy($next, $big) or die;
            push @req, [$S, $E, "$delta.$k"];
        }
        for my $q (@req) {
            open my $c, '-|', curl_patch($s, '/dav/stale.bin', $q->[2], $q->[0], $q->[1], $STALE) or die;
            my $code = <$c>;
            close $c;
            is($code, 204, "try $try: PATCH-APPLY at $q->[0]");
        }
        my ($h, $deadline) = ('', time + 30);
        while (time < $deadline) {
            $h = prop_sha1($s, '/dav/stale.bin');
            last if $h ne 'pending';
            sleep 0.1;
        }
        is($h, sha1_file("$s->{live}/stale.bin"), "try $try: the recorded SHA-1 is the final file's");
        is(sha1_file("$s->{live}/stale.bin"), sha1_file($big), "try $try: the file is the second patch's");
        my $after = () = $s->error_log =~ /stale store refused/g;
        if ($after > $before) { $refused = 1; last }
    }
    ok($refused, "a worker's store computed from an older version was refused (logged)");
}

# ------------------------------- the journalled phase, point by point
# strace kills the serving child (SIGKILL, as kill -9) at a chosen system
# call on the target file: before the first in-place write, after two of
# them (the file torn on disk), before its fsync.  (A shrinking patch
# killed this way was left out: now and then the traced child outlived
# the kill and completed the request itself, which made the check flaky;
# the random kill rounds and t/70 cover truncation.)  The record is durable by then, so the restart's
# recovery must complete the patch: the new version, the SHA-1 pending or
# right, no journal file left.
SKIP: {
    skip 'strace is not installed', 1 if system('command -v strace >/dev/null 2>&1');
    my $s = MirrorDAV::Test->start_server();
    my $fs = `stat -f -c %T '${\$s->volume}'`;
    skip "the volume is on $fs, which may clone (no in-place phase)", 1 unless $fs =~ /ext/;
    my $live = $s->live;
    my $local = "$tmp/points";
    my $size = 16 << 20;
    system("head -c $size /dev/urandom > $local") == 0 or die;
    system('curl', '-s', '-o', '/dev/null', '-T', $local, $s->url('/dav/big.bin')) == 0 or die;
    for my $point (['pwrite64', 1, 'before the first in-place write'],
                   ['pwrite64', 3, 'after two in-place writes (torn on disk)'],
                   ['fsync', 1, 'before the fsync of the file']) {
        my ($call, $when, $what) = @$point;
        my ($S, $E, $delta, $next, $new);
        my $T = $size;
        my @extra;
        if ($what =~ /shrinking/) {
            # O is the first half of the file, rewritten: F[0,S) + O, shorter.
            ($S, $E, $delta, $next, $new) = next_version($local, $size / 2, 4 << 20, 1 << 20);
            $T = $E + 1;
            system("truncate -s $T $next") == 0 or die;
            $new = sha1_file($next);
            @extra = ('-H', 'FileTruncate: true');
        } else {
            ($S, $E, $delta, $next, $new) = next_version($local, $size, 4 << 20, 1 << 20);
        }
        my $old = sha1_file($local);
        my $journalled = 0;
        my @rec_before;
        for my $try (1 .. 3) {
        $s->{opts}{wrap} = ['strace', '-f', '-qq', '-o', '/dev/null', '-P', "$live/big.bin",
                            '-e', "trace=$call", '-e', "inject=$call:signal=KILL:when=$when"];
        crash_server($s);   # the whole group: a TERM would stop strace only
        unlink "$s->{run}/httpd.pid";
        $s->restart;
        # Its status ("000": the child died) must not reach the TAP stream.
        my $status = qx{@{[join ' ', map { "'$_'" } curl_patch($s, '/dav/big.bin', $delta, $S, $E, $T), @extra]}};
        crash_server($s);
        # httpd ran under strace: killed, it may stay a zombie nobody
        # reaps, which httpd's pid file check would take for a live server.
        unlink "$s->{run}/httpd.pid";
        delete $s->{opts}{wrap};
        # A traced child can outlive the group's kill for a moment (it
        # leaves its ptrace stop once strace is gone, and then would finish
        # the request itself): every process of ours that still has the
        # file or a journal file open is killed by its pid, and waited for.
        for (1 .. 100) {
            my @pids = holders($live . '/big.bin', $s->volume . '/state/patch-');
            last unless @pids;
            kill 'KILL', @pids;
            sleep 0.05;
        }
        # The record is what this point is about; now and then the kill
        # lands earlier (the file is then the old version, nothing to
        # replay): try again.
        @rec_before = map { my @st = stat $_; "$_ size=$st[7]" } glob($s->volume . '/state/patch-*');
        $journalled = () = glob($s->volume . '/state/patch-*.rec');
        last if $journalled;
        is(sha1_file("$live/big.bin"), $old, "killed $what, try $try: before the journal, the old version");
        $s->restart;
        }
        ok($journalled, "killed $what: the kill left a journal record") or next;
        if ($when == 3) {
            # This one is left to mirrordav fsck, with the server down.
            my $fsck = "$ENV{MIRRORDAV_BUILD}/mirrordav fsck --volume " . $s->volume;
            my $out = `$fsck 2>/dev/null`;
            isnt($? >> 8, 0, "killed $what: fsck finds problems");
            like($out, qr/big\.bin\tinterrupted-patch\t/, "killed $what: fsck reports the interrupted patch");
            like($out, qr/big\.bin\tpending-hash\t/, "killed $what: fsck reports the pending hash");
            $out = `$fsck --repair 2>/dev/null`;
            like($out, qr/big\.bin\tinterrupted-patch\tinterrupted PATCH-APPLY completed/, "killed $what: fsck --repair replays it");
            like($out, qr/big\.bin\tpending-hash\tSHA-1 stored/, "killed $what: fsck --repair computes the hash");
            is(sha1_file("$live/big.bin"), $new, "killed $what: fsck --repair completed the patch");
            $out = `$fsck 2>/dev/null`;
            is($? >> 8, 0, "killed $what: fsck then finds nothing") or diag($out);
            $s->restart;
            is(prop_sha1($s, '/dav/big.bin'), $new, "killed $what: the sha1 property is the new file's");
        } else {
            $s->restart;
            # Once TODO (failed about one run in five under load): the
            # harness took httpd for started once it accepted a connection,
            # before its post_config recovery had replayed and logged; it
            # now waits for an answer (MirrorDAV::Test::_launch).
            like($s->error_log, qr/big\.bin: interrupted PATCH-APPLY completed/, "killed $what: recovery replayed the record")
                or diag("error log:\n" . $s->error_log . "journal before the restart: @rec_before");
        }
        my $now = sha1_file("$live/big.bin");
        is($now, $new, "killed $what: the patch is complete")
            or diag($now eq $old ? 'the file is the old version' : 'the file is neither version');
        opendir my $d, $s->volume . '/state' or die;
        is(join(' ', grep { /^patch-/ } readdir $d), '', "killed $what: no journal file left");
        my $h = prop_sha1($s, '/dav/big.bin');
        ok($h eq $new || $h eq 'pending', "killed $what: sha1 property right or pending") or diag("got '$h'");
        $size = -s "$live/big.bin";
        copy("$live/big.bin", $local) or die;
        truncate $s->{run} . '/error.log', 0;
    }
}

# ------------------------------------------------------------ XFS: clone
SKIP: {
    skip 'XFS crash rounds need root (loop mount)', 1 if $> != 0;
    skip 'mkfs.xfs is missing', 1 if system('command -v mkfs.xfs >/dev/null 2>&1');
    my $img = "$tmp/xfs.img";
    my $mnt = "$tmp/xfs";
    mkdir $mnt;
    system("truncate -s 2G $img && mkfs.xfs -q -m reflink=1 $img && mount -o loop $img $mnt") == 0
        or skip('could not make and mount an XFS image', 1);
    chmod 0755, $mnt;
    {
        my $s = MirrorDAV::Test->start_server(fsync => 'Off', volume => "$mnt/volume");
        crash_rounds($s, 'XFS (reflink)');
        my $log = $s->error_log;
        unlike($log, qr/interrupted PATCH-APPLY completed/, 'XFS: no in-place journal was needed (clone path)');
        $s->stop;
        undef $s;
    }
    system("umount $mnt");
}

done_testing();
