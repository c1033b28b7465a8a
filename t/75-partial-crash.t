#!/usr/bin/env perl
# The partial-update dialects under kill -9 (SPEC 4b, 5): httpd is killed
# at a random instant during a SabreDAV PATCH or a PUT with Content-Range
# to a large-ish file, on the default volume (ext4 here: the journalled
# in-place path of patch_commit.c) and, every third round, with the file
# shared by a snapshot taken just before (the whole-copy path).  After each
# restart (recovery runs at start), and on a loop-mounted XFS (the clone
# path; root only):
#  - the file is exactly the old or exactly the new version, never a mix;
#  - no journal file is left in state/;
#  - the sidecar agrees: its size is the file's, and the SHA-1 property is
#    the file's or pending, never another value;
#  - a snapshot taken before the request still holds the old bytes.
# At the end the worker has recorded the final file's SHA-1.
#
# MIRRORDAV_PARTIAL_CRASH_ROUNDS (default 12) rounds on a file of
# MIRRORDAV_PARTIAL_CRASH_SIZE bytes (default 32 MiB), writes of up to 8
# MiB; a soak is ROUNDS=100 SIZE=268435456.  MIRRORDAV_CRASH_SEED repeats
# a run.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use File::Copy qw(copy);
use Time::HiRes qw(sleep time);
use POSIX ();
use MirrorDAV::Test qw(slurp spew sha1_file);
use MirrorDAV::CrashTree qw(crash_server);

my $ROUNDS = $ENV{MIRRORDAV_PARTIAL_CRASH_ROUNDS} // 12;
my $SIZE   = $ENV{MIRRORDAV_PARTIAL_CRASH_SIZE}   // 32 << 20;
my $MAXW   = 8 << 20;
my $seed   = $ENV{MIRRORDAV_CRASH_SEED} // int(rand(1 << 30));
srand $seed;
diag("seed $seed (MIRRORDAV_CRASH_SEED=$seed repeats it), $ROUNDS rounds on $SIZE bytes");
my $tmp   = tempdir('partial-crash-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $admin = "$ENV{MIRRORDAV_BUILD}/mirrordav";
my $TYPE  = 'application/x-sabredav-partialupdate';

open my $rnd, '<:raw', '/dev/urandom' or die;
sub rbytes { my $n = shift; my $b = ''; read($rnd, $b, $n) if $n > 0; $b }

sub prop_sha1 {
    my ($s, $path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>});
    return $1 if $r->{content} =~ m{<lp\d+:sha1>([0-9a-f]{40})</lp\d+:sha1>};
    return 'pending' if $r->{content} =~ m{<lp(\d+):sha1 lp\1:pending="true"/>};
    return '';
}

# The next write to the file at LOCAL (SIZE bytes now): a request (curl's
# arguments) and the new version's path and SHA-1.  Kinds take turns:
# PATCH inside, PUT with Content-Range inside, PATCH past the end (a gap
# of zeros, the file grows).
sub next_write {
    my ($s, $local, $round, $minlen) = @_;
    my $size = -s $local;
    my $len  = ($minlen // 1) + int rand($MAXW - ($minlen // 1) + 1);
    my $kind = $round % 3;
    my $S = $kind == 2 ? $size + int rand(65536) : int rand($size - $len + 1);
    my $E = $S + $len - 1;
    spew("$tmp/body", rbytes($len));
    copy($local, "$tmp/next") or die;
    open my $fh, '+<:raw', "$tmp/next" or die;
    truncate($fh, $S) if $S > $size;   # the gap reads as zeros
    sysseek($fh, $S, 0);
    syswrite($fh, slurp("$tmp/body")) == $len or die;
    close $fh;
    my @curl = ('curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Expect:',
                '--data-binary', "\@$tmp/body");
    push @curl, $kind == 1
        ? ('-X', 'PUT', '-H', "Content-Range: bytes $S-$E/*")
        : ('-X', 'PATCH', '-H', "Content-Type: $TYPE", '-H', "X-Update-Range: bytes=$S-$E");
    my $what = ($kind == 1 ? 'PUT Content-Range' : 'PATCH') . " $S-$E" . ($kind == 2 ? ' (past the end)' : '');
    return ([@curl, $s->url('/dav/big.bin')], $what, "$tmp/next", sha1_file("$tmp/next"));
}

# $s->restart, but on another port when the old one was taken meanwhile:
# while the server is down after a kill, another test on the machine may
# be given its port, and the harness, finding the port answering, cannot
# tell that our httpd exited at once ("Address already in use").
sub relaunch {
    my ($s) = @_;
    my $log = "$s->{run}/stdout.log";
    for my $try (1 .. 5) {
        my $from = -s $log // 0;
        $s->restart;
        sleep 0.3;
        return if waitpid($s->{pid}, POSIX::WNOHANG()) != $s->{pid};
        delete $s->{pid};
        my $out = substr(slurp($log) // '', $from);
        die "httpd exited at restart:\n$out" unless $out =~ /Address already in use/;
        my $port = MirrorDAV::Test::free_port();
        my $conf = slurp($s->{conf});
        $conf =~ s/^Listen 127\.0\.0\.1:\d+$/Listen 127.0.0.1:$port/m or die 'no Listen line';
        spew($s->{conf}, $conf);
        $s->{port} = $port;
        $s->{url}  = "http://127.0.0.1:$port";
        note("the port was taken by another process during the restart; now $port");
    }
    die 'httpd could not be restarted';
}

my $s = MirrorDAV::Test->start_server();
my $live = $s->live;
my $fs = `stat -f -c %T '${\$s->volume}'`;
chomp $fs;
note("default volume on $fs");

# ROUNDS kills on the volume of server S; LOCAL is the local copy.
# Returns the SHA-1 of the file as it ends.
sub crash_rounds {
    my ($s, $label, $local, $rounds) = @_;
    my $live = $s->live;
    my $replayed;
    system("head -c $SIZE /dev/urandom > $local") == 0 or die;
    system('curl', '-s', '-o', '/dev/null', '-T', $local, $s->url('/dav/big.bin')) == 0 or die;
    my $cur = sha1_file($local);
    is(sha1_file("$live/big.bin"), $cur, "$label: the file is in place");

    # One request of each kind timed without a kill: the kills fall anywhere
    # in a request's span.
    my $span = 0;
    for my $round (0 .. 2) {
        my ($curl, $what, $next, $new) = next_write($s, $local, $round);
        my $t0 = time;
        my $code = qx{@{[join ' ', map { "'$_'" } @$curl]}};
        my $t = time - $t0;
        $span = $t if $t > $span;
        is($code, 204, "$label: undisturbed $what: 204");
        is(sha1_file("$live/big.bin"), $new, "$label: undisturbed $what: the new version");
        copy($next, $local) or die;
        $cur = $new;
    }
    note(sprintf "$label: the longest request took %.3f s", $span);

    my %outcome = (old => 0, new => 0);
    my %snaps;   # name => the SHA-1 of the version it holds
    for my $round (1 .. $rounds) {
        my $snap;
        if ($round % 3 == 0) {
            # Shared with a snapshot: the commit copies the file whole.
            $snap = "s$round";
            my $r = $s->mkcol("/snapshots/$snap");
            is($r->{status}, 201, "$label round $round: snapshot $snap taken") or diag($r->{content});
            $snaps{$snap} = $cur;
        }
        my ($curl, $what, $next, $new) = next_write($s, $local, $round);
        my $pid = fork // die;
        if (!$pid) {
            open STDOUT, '>', '/dev/null';
            { exec @$curl };
            POSIX::_exit(127);
        }
        sleep rand(1.2 * $span);
        crash_server($s);
        waitpid $pid, 0;
        relaunch($s);
        my $now = sha1_file("$live/big.bin");
        my $which = $now eq $cur ? 'old' : $now eq $new ? 'new' : 'neither';
        $outcome{$which}++;
        is($which ne 'neither' ? 1 : 0, 1, "$label round $round, $what" . ($snap ? ' (shared)' : '') . ": old or new, never a mix")
            or last;
        if ($which eq 'new') {
            copy($next, $local) or die;
            $cur = $new;
        }
        opendir my $d, $s->volume . '/state' or die;
        my @left = grep { /^patch-/ } readdir $d;
        is("@left", '', "$label round $round: no journal file left");
        my ($size) = `'$admin' sidecar dump '$live/big.bin'` =~ /\bsize=(\d+)/;
        is($size, -s "$live/big.bin", "$label round $round: the sidecar's size is the file's");
        my $h = prop_sha1($s, '/dav/big.bin');
        ok($h eq $cur || $h eq 'pending', "$label round $round: the SHA-1 property is the file's or pending")
            or diag("got '$h', file $cur ($which); sidecar: "
                    . `'$admin' sidecar dump '$live/big.bin'` . 'stat: '
                    . `stat -c '%i %s %Y %y %z %h' '$live/big.bin'`
                    . 'pending: ' . join(' ', glob($s->volume . '/state/pending/p-*')));
        for my $n (sort keys %snaps) {
            is(sha1_file($s->volume . "/snapshots/$n/big.bin"), $snaps{$n},
               "$label round $round: snapshot $n keeps the version it was taken of");
        }
    }
    diag("$label: " . join(', ', map { "$_ $outcome{$_}" } sort keys %outcome));
    $replayed = () = $s->error_log =~ /interrupted PATCH-APPLY completed/g;
    diag("$label: $replayed interrupted writes completed by recovery from the journal");

    # In the end the worker computes the hash of the final file.
    my ($h, $deadline) = ('', time + 30);
    while (time < $deadline) {
        $h = prop_sha1($s, '/dav/big.bin');
        last if $h ne 'pending';
        sleep 0.2;
    }
    is($h, $cur, "$label: the worker recorded the final file's SHA-1")
        or diag('sidecar: ' . `'$admin' sidecar dump '$live/big.bin'`);
    return ($cur, $replayed);
}

my $local = "$tmp/current";
my ($cur) = crash_rounds($s, "default volume ($fs)", $local, $ROUNDS);

# ------------------------------- the journalled phase, point by point
# Random kills land in the in-place phase only now and then; here strace
# kills the serving child (SIGKILL, as kill -9) at its third pwrite to the
# file, the new bytes torn on disk, once per dialect.  The journal record
# is durable by then: the restart's recovery must complete the write.
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

SKIP: {
    skip 'strace is not installed', 1 if system('command -v strace >/dev/null 2>&1');
    skip "the volume is on $fs, which may clone (no in-place phase)", 1 unless $fs =~ /ext/;
    # A file no snapshot shares (a whole PUT gives it a new inode), so that
    # the write goes in place.
    system('curl', '-s', '-o', '/dev/null', '-T', $local, $s->url('/dav/big.bin')) == 0 or die;
    is((stat "$live/big.bin")[3], 1, 'the file is shared with no snapshot');
    for my $round (3, 4) {   # PATCH, then PUT with Content-Range
        # At least 2 MiB: the apply copies in 256 KiB writes.
        my ($curl, $what, $next, $new) = next_write($s, $local, $round, 2 << 20);
        my $journalled = 0;
        for my $try (1 .. 3) {
            $s->{opts}{wrap} = ['strace', '-f', '-qq', '-o', '/dev/null', '-P', "$live/big.bin",
                                '-e', 'trace=pwrite64', '-e', 'inject=pwrite64:signal=KILL:when=3'];
            crash_server($s);
            unlink "$s->{run}/httpd.pid";
            relaunch($s);
            my $status = qx{@{[join ' ', map { "'$_'" } @$curl]}};
            crash_server($s);
            unlink "$s->{run}/httpd.pid";
            delete $s->{opts}{wrap};
            for (1 .. 100) {
                my @pids = holders("$live/big.bin", $s->volume . '/state/patch-');
                last unless @pids;
                kill 'KILL', @pids;
                sleep 0.05;
            }
            $journalled = () = glob($s->volume . '/state/patch-*.rec');
            last if $journalled;
            is(sha1_file("$live/big.bin"), $cur, "$what killed, try $try: before the journal, the old version");
            relaunch($s);
        }
        ok($journalled, "$what killed at its third in-place write: a journal record is left") or next;
        relaunch($s);
        is(sha1_file("$live/big.bin"), $new, "$what killed at its third in-place write: recovery completed it");
        copy($next, $local) or die;
        $cur = $new;
        opendir my $d, $s->volume . '/state' or die;
        is(join(' ', grep { /^patch-/ } readdir $d), '', "$what: no journal file left");
        my ($size) = `'$admin' sidecar dump '$live/big.bin'` =~ /\bsize=(\d+)/;
        is($size, -s "$live/big.bin", "$what: the sidecar's size is the file's");
        my $h = prop_sha1($s, '/dav/big.bin');
        ok($h eq $cur || $h eq 'pending', "$what: the SHA-1 property is the file's or pending") or diag("got '$h'");
    }
}

# ------------------------------------------------------------ XFS: clone
# Where the file system clones, the commit writes into a FICLONE of the
# file and renames it over: no journal.  Needs root (a loop mount).
SKIP: {
    skip 'XFS rounds need root (loop mount)', 1 if $> != 0;
    skip 'mkfs.xfs is missing', 1 if system('command -v mkfs.xfs >/dev/null 2>&1');
    my ($img, $mnt) = ("$tmp/xfs.img", "$tmp/xfs");
    mkdir $mnt;
    system("truncate -s 1G $img && mkfs.xfs -q -m reflink=1 $img && mount -o loop $img $mnt") == 0
        or skip('could not make and mount an XFS image', 1);
    chmod 0755, $mnt;
    {
        my $x = MirrorDAV::Test->start_server(fsync => 'Off', volume => "$mnt/volume");
        my (undef, $replayed) = crash_rounds($x, 'XFS (reflink)', "$tmp/xfs-current", 6);
        is($replayed, 0, 'XFS: no journal was needed (the clone path)');
        $x->stop;
    }
    system('umount', $mnt);
}

done_testing();
