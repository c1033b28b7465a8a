#!/usr/bin/env perl
# kill -9 of httpd at random points during COPY and MOVE, with and without
# Overwrite, of a 2000-file tree with dead properties (on the tree, its
# folders and every tenth file) and SHA-1 records.  After each crash the
# server is started again (its start resolves interrupted operations), and
# then:
#   - mirrordav fsck finds nothing to repair, no staging folder or intent
#     record is left;
#   - the destination holds the old tree or the new tree entirely, every
#     property and hash included;
#   - COPY: the source is intact; MOVE: the tree is entirely at the source
#     or entirely at the destination.
# A server start held back on state/intent.lock shows that the harness
# waits for the recovery before it calls the server started.
# Then fsck itself: it reports an interrupted operation and leaves it be,
# --repair completes or rolls it back; a staging folder no record claims
# and a legacy trash folder are reported and never deleted; a trash folder
# in a collection does not keep DELETE from removing it.
#
# MIRRORDAV_CRASH_ROUNDS (default 30) sets the number of random kills;
# MIRRORDAV_CRASH_SEED makes a run repeatable (the seed used is printed).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Fcntl qw(:flock);
use POSIX ();
use Time::HiRes qw(sleep time);
use MirrorDAV::Test;
use MirrorDAV::CrashTree qw(build_tree tree_signature crash_server);

MirrorDAV::CrashTree::use_fast_tmpdir();
my $rounds = $ENV{MIRRORDAV_CRASH_ROUNDS} // 30;
my $seed   = $ENV{MIRRORDAV_CRASH_SEED} // int(rand(1 << 30));
srand $seed;
note "seed $seed, $rounds rounds";

# fsync off: a kill -9 loses nothing that reached the page cache.
my $s      = MirrorDAV::Test->start_server(fsync => 'Off');
my $live   = $s->live;
my $volume = $s->volume;
my $admin  = "$ENV{MIRRORDAV_BUILD}/mirrordav";
my $keep   = "$s->{base}/pristine";

build_tree($s, '/dav/a', 'new', 20, 100);
build_tree($s, '/dav/old', 'old', 10, 20);
my $sig_a   = tree_signature($s, '/dav/a');
my $sig_old = tree_signature($s, '/dav/old');
is scalar(grep { /sha1=[0-9a-f]{40}/ } values %$sig_a), 2000, 'the 2000 files have their hash';
is scalar(grep { /tag=new-/ } values %$sig_a), 221, 'the tree, its folders and 200 files have a property';
is scalar(grep { /tag=old-/ } values %$sig_old), 31, 'and so have the old tree, its folders and 20 files';
is system("$admin fsck --volume $volume >/dev/null 2>&1"), 0, 'fsck finds the fresh trees clean';

mkdir $keep or die;
for my $t ('a', 'old') {
    system('cp', '-a', "$live/$t", "$keep/$t") == 0 or die;
    system('cp', '-a', "$live/.mirrordav/$t.db", "$keep/$t.db") == 0 or die;
}
system('rm', '-rf', "$live/old", "$live/.mirrordav/old.db");

# Lays out TREE (a pristine tree) at NAME, unless it is there already.
my %whole;   # name => tree found whole there by the last check
sub lay {
    my ($tree, $name) = @_;
    return 0 if ($whole{$name} // '') eq $tree;
    system('rm', '-rf', "$live/$name", "$live/.mirrordav/$name.db");
    system('cp', '-a', "$keep/$tree", "$live/$name") == 0 or die;
    system('cp', '-a', "$keep/$tree.db", "$live/.mirrordav/$name.db") == 0 or die;
    return 1;
}
sub reset_trees {
    my ($overwrite) = @_;
    my $copied = lay('a', 'a');
    if ($overwrite) { $copied += lay('old', 'b') }
    else {
        # A tree removed by hand is still in the usage counter: fsck
        # recounts.
        $copied = 1 if -e "$live/b";
        system('rm', '-rf', "$live/b", "$live/.mirrordav/b.db");
    }
    %whole = ();
    # A copy is a new inode: its records, bound to the originals' identity,
    # read unknown until fsck binds them to the copies (same bytes, same
    # SHA-1), as it would after restoring a backup by hand.
    system("$admin fsck --repair --volume $volume >/dev/null 2>&1") if $copied;
}

sub op_cmd {
    my ($op, $overwrite) = @_;
    return ('curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', $op,
            '-H', 'Destination: ' . $s->url('/dav/b'), '-H', 'Overwrite: ' . ($overwrite ? 'T' : 'F'),
            '-H', 'Depth: infinity', $s->url('/dav/a'));
}

sub same {
    my ($x, $y) = @_;
    return !defined $x && !defined $y if !defined $x || !defined $y;
    return 0 unless keys %$x == keys %$y;
    for (keys %$x) { return 0 unless defined $y->{$_} && $y->{$_} eq $x->{$_} }
    return 1;
}

sub check_round {
    my ($what, $op, $overwrite) = @_;
    my $report = `$admin fsck --volume $volume 2>&1`;
    is $? >> 8, 0, "$what: fsck finds nothing left to repair" or diag $report;
    is_deeply [glob("$live/.mirrordav/.stage-* $volume/state/intent-*")], [],
        "$what: no staging folder, no intent record";
    my $a = tree_signature($s, '/dav/a');
    my $b = tree_signature($s, '/dav/b');
    my $old_b = $overwrite ? $sig_old : undef;
    my ($done, $undone);
    if ($op eq 'COPY') {
        $done   = same($a, $sig_a) && same($b, $sig_a);
        $undone = same($a, $sig_a) && same($b, $old_b);
    } else {
        $done   = !defined $a && same($b, $sig_a);
        $undone = same($a, $sig_a) && same($b, $old_b);
    }
    %whole = ();
    $whole{a} = 'a' if same($a, $sig_a);
    $whole{b} = 'a' if same($b, $sig_a);
    $whole{b} = 'old' if $overwrite && same($b, $sig_old);
    ok $done || $undone, "$what: " . ($done ? 'done entirely' : $undone ? 'not done at all' : 'MIXED')
        . ', with every property and hash'
        or diag explain { a => $a && scalar(keys %$a), b => $b && scalar(keys %$b) };
    return $done;
}

my @ops = (['COPY', 0], ['COPY', 1], ['MOVE', 0], ['MOVE', 1]);
my %took;

# Each operation once without a crash: it works, and how long it takes
# tells where to aim the kills.
for my $o (@ops) {
    my ($op, $overwrite) = @$o;
    my $what = "$op" . ($overwrite ? ' with Overwrite' : '');
    reset_trees($overwrite);
    my $t0 = time;
    my $code = `${\join ' ', map { "'$_'" } op_cmd($op, $overwrite)}`;
    $took{"@$o"} = time - $t0;
    is $code, $overwrite ? 204 : 201, "$what: $code";
    ok check_round("$what, no crash", $op, $overwrite), "$what: done";
}
note sprintf "%s took %.3f s", $_, $took{$_} for sort keys %took;

my %outcome;
for my $round (1 .. $rounds) {
    my ($op, $overwrite) = @{ $ops[int rand @ops] };
    my $delay = rand($took{"$op $overwrite"} * 1.2);
    my $what  = sprintf 'round %d, %s%s killed after %.1f ms', $round, $op,
                        $overwrite ? ' with Overwrite' : '', $delay * 1000;
    reset_trees($overwrite);
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec op_cmd($op, $overwrite);
        exit 127;
    }
    sleep $delay;
    crash_server($s);
    waitpid $pid, 0;
    $s->restart;   # resolves the interrupted operation before serving
    $outcome{ check_round($what, $op, $overwrite) ? 'done' : 'not done' }++;
}
note join ', ', map { "$_: $outcome{$_}" } sort keys %outcome;
# The recoveries ran in httpd's post_config, as root: they must have done
# their work as the volume's owner.
is `find '$volume' -uid 0 | head -5`, '', 'recovery at server start left no root-owned file in the volume';
ok -e "$volume/state/intent.lock", '... and serialised on state/intent.lock';

# ------------------------------------------------------------ fsck
# An operation that died at a known step (the crash point after the record
# says "swap" and before the swap; then the one right after the swap),
# looked at by fsck while the server lives on: reported and left as it is,
# then resolved by --repair.
for my $case ([4, 'before the swap', 0], [5, 'after the swap', 1]) {
    my ($point, $when, $swapped) = @$case;
    reset_trees(1);
    {
        local $ENV{MIRRORDAV_TEST_CRASH_POINT} = $point;
        $s->restart;
        `${\join ' ', map { "'$_'" } op_cmd('COPY', 1)}`;
    }
    my @stage = glob("$live/.mirrordav/.stage-*");
    is scalar @stage, 1, "COPY killed $when: its staging folder is there";
    my $files = () = `find '$stage[0]' -name '*.txt'`;
    my $report = `$admin fsck --volume $volume 2>&1`;
    is $? >> 8, 1, "fsck exits 1";
    like $report, qr{state/intent-\w+\tinterrupted-copy\treported \(destination \Q$live\E/b\)},
        '... and reports the interrupted COPY';
    unlike $report, qr{stale-stage}, '... whose staging folder is its record\'s';
    is scalar(() = `find '$stage[0]' -name '*.txt'`), $files, '... and leaves the staging folder whole';
    $report = `$admin fsck --repair --volume $volume 2>&1`;
    is $? >> 8, 0, 'fsck --repair resolves it' or diag $report;
    like $report, $swapped ? qr/\tcomplete \(the swap was done\): done/ : qr/\troll back \(the swap was not done\): done/,
        $swapped ? '... by completing it' : '... by rolling it back';
    $s->restart;
    check_round("COPY killed $when, repaired by fsck", 'COPY', 1);
    is((() = glob("$live/.mirrordav/.stage-*")), 0, '... no staging folder left');
}

# A server is up once it answers, not once its port takes connections:
# httpd listens (open_logs) before its post_config runs the recovery, so
# a check made as soon as the port connects could run before the
# recovery, and find its record (the flaky "fsck finds nothing left to
# repair" of the rounds above).  Here the recovery is held back on
# state/intent.lock for 3 s by another process: restart must not come
# back before it has run.
{
    reset_trees(1);
    {
        local $ENV{MIRRORDAV_TEST_CRASH_POINT} = 4;
        $s->restart;
        `${\join ' ', map { "'$_'" } op_cmd('COPY', 1)}`;
    }
    is scalar(() = glob("$volume/state/intent-*")), 1, 'COPY killed before the swap: its record is left';
    pipe my $rd, my $wr or die;
    my $holder = fork // die;
    if (!$holder) {
        close $rd;
        open my $lk, '<', "$volume/state/intent.lock" or POSIX::_exit(1);
        flock $lk, LOCK_EX or POSIX::_exit(1);
        syswrite $wr, "locked\n";
        sleep 3;
        POSIX::_exit(0);
    }
    close $wr;
    is scalar(<$rd>), "locked\n", 'another process holds state/intent.lock';
    $s->restart;
    is_deeply [glob("$live/.mirrordav/.stage-* $volume/state/intent-*")], [],
        '... and restart comes back once the recovery has run: no record, no staging folder';
    my $report = `$admin fsck --volume $volume 2>&1`;
    is $? >> 8, 0, '... fsck finds nothing left to repair' or diag $report;
    waitpid $holder, 0;
    check_round('COPY killed before the swap, recovery held back', 'COPY', 1);
}

# Folders in a sidecar folder that no record claims are reported, and
# never removed: they may hold the only copy of something.
mkdir "$live/.mirrordav/.stage-0123456789ab" or die;
system("echo x > '$live/.mirrordav/.stage-0123456789ab/only-copy'");
mkdir "$live/a/d1/.mirrordav/.trash-0123456789abcdef" or die;
system("echo y > '$live/a/d1/.mirrordav/.trash-0123456789abcdef/only-copy'");
system('chown', '-R', '--reference', $live, "$live/.mirrordav", "$live/a/d1/.mirrordav");
my $report = `$admin fsck --repair --volume $volume 2>&1`;
is $? >> 8, 1, 'fsck --repair exits 1 on an unclaimed staging folder and a trash folder';
like $report, qr{\.stage-0123456789ab\tstale-stage\treported}, '... reports the staging folder';
like $report, qr{\.trash-0123456789abcdef\tstale-trash\treported}, '... and the trash folder';
ok -f "$live/.mirrordav/.stage-0123456789ab/only-copy", '... and keeps the one';
ok -f "$live/a/d1/.mirrordav/.trash-0123456789abcdef/only-copy", '... and the other';
# A client that deletes the collection deletes what it held.
my $r = $s->delete('/dav/a/d1');
is $r->{status}, 204, 'DELETE of a collection with a trash folder in its sidecar folder -> 204'
    or diag $r->{content};
ok !-e "$live/a/d1", '... it is gone';

done_testing;
