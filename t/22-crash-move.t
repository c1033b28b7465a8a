#!/usr/bin/env perl
# kill -9 in the middle of a depth-infinity MOVE of a 2000-file tree with
# dead properties and SHA-1 records, with and without Overwrite:
#   - at every crash point of the operation (MIRRORDAV_TEST_CRASH_POINT
#     makes the serving process kill itself at the Nth step, see
#     sidecar/intent.h), recovered by `mirrordav fsck --repair`;
#   - at random times, recovered by the server's own start.
# Afterwards the tree is entirely at the source or entirely at the
# destination (and the destination, if it was overwritten, is entirely
# the old tree or the moved one), and no dead property or hash is lost or
# wrong.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use MirrorDAV::Test;
use MirrorDAV::CrashTree qw(build_tree tree_signature crash_server);

MirrorDAV::CrashTree::use_fast_tmpdir();

# A kill -9 of the server loses nothing that reached the page cache, so
# fsync is not what this test is about; off, the tree is written faster.
my $s      = MirrorDAV::Test->start_server(fsync => 'Off');
my $live   = $s->live;
my $admin  = "$ENV{MIRRORDAV_BUILD}/mirrordav";
my $volume = $s->volume;
my $keep   = "$s->{base}/pristine";

build_tree($s, '/dav/a', 'new', 20, 100);
build_tree($s, '/dav/old', 'old', 5, 20);
my $sig_a   = tree_signature($s, '/dav/a');
my $sig_old = tree_signature($s, '/dav/old');
is scalar(grep { /sha1=[0-9a-f]{40}/ } values %$sig_a), 2000, 'the 2000 files have their hash';
is scalar(grep { /tag=new-/ } values %$sig_a), 221, 'the tree, its folders and 200 files have a property';
is system("$admin fsck --volume $volume >/dev/null 2>&1"), 0, 'fsck finds the fresh trees clean';

# The trees as they are on disk, with their own sidecars, to start each
# round from.
mkdir $keep or die;
for my $t ('a', 'old') {
    system('cp', '-a', "$live/$t", "$keep/$t") == 0 or die;
    system('cp', '-a', "$live/.mirrordav/$t.db", "$keep/$t.db") == 0 or die;
}
system('rm', '-rf', "$live/old", "$live/.mirrordav/old.db");

# Lays out the source a, and the old tree at b when OVERWRITE.
# A tree that check_round found whole is moved back rather than copied.
my $whole_at;
sub reset_trees {
    my ($overwrite) = @_;
    if (($whole_at // '') eq 'b') {
        rename "$live/b", "$live/a" or die;
        rename "$live/.mirrordav/b.db", "$live/.mirrordav/a.db" or die;
    }
    elsif (($whole_at // '') ne 'a') {
        system('rm', '-rf', "$live/a", "$live/.mirrordav/a.db");
        system('cp', '-a', "$keep/a", "$live/a") == 0 or die;
        system('cp', '-a', "$keep/a.db", "$live/.mirrordav/a.db") == 0 or die;
    }
    my $copied = !defined $whole_at;
    undef $whole_at;
    # A tree removed by hand is still in the usage counter: fsck recounts.
    $copied = 1 if -e "$live/b";
    system('rm', '-rf', "$live/b", "$live/.mirrordav/b.db");
    if ($overwrite) {
        system('cp', '-a', "$keep/old", "$live/b") == 0 or die;
        system('cp', '-a', "$keep/old.db", "$live/.mirrordav/b.db") == 0 or die;
        $copied = 1;
    }
    # A copy is a new inode: its records, bound to the originals' identity,
    # read unknown until fsck binds them to the copies (same bytes, same
    # SHA-1), as it would after restoring a backup by hand.
    system("$admin fsck --repair --volume $volume >/dev/null 2>&1") if $copied;
}

sub move_cmd {
    my ($overwrite) = @_;
    return ('curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'MOVE',
            '-H', 'Destination: ' . $s->url('/dav/b'), '-H', 'Overwrite: ' . ($overwrite ? 'T' : 'F'),
            $s->url('/dav/a'));
}

# After recovery: nothing left to repair, and the trees are whole.
sub check_round {
    my ($what, $overwrite) = @_;
    my $report = `$admin fsck --volume $volume 2>&1`;
    is $? >> 8, 0, "$what: fsck finds nothing left to repair" or diag $report;
    is_deeply [glob("$live/.mirrordav/.stage-* $volume/state/intent-*")], [], "$what: no staging folder, no intent record";
    my $a = tree_signature($s, '/dav/a');
    my $b = tree_signature($s, '/dav/b');
    my $old_b = $overwrite ? $sig_old : undef;
    my $moved = !defined $a && is_deeply_quiet($b, $sig_a);
    my $not   = is_deeply_quiet($a, $sig_a) && is_deeply_quiet($b, $old_b);
    $whole_at = $moved ? 'b' : $not ? 'a' : undef;
    ok $moved || $not, "$what: " . ($moved ? 'moved entirely' : $not ? 'not moved at all' : 'MIXED')
        . ', every property and hash as it was' or diag explain { a => $a && scalar(keys %$a), b => $b && scalar(keys %$b) };
    return $moved;
}

sub is_deeply_quiet {
    my ($x, $y) = @_;
    return !defined $x && !defined $y if !defined $x || !defined $y;
    return 0 unless keys %$x == keys %$y;
    for (keys %$x) { return 0 unless defined $y->{$_} && $y->{$_} eq $x->{$_} }
    return 1;
}

# ------------------------------------------------------------ every crash point
for my $overwrite (0, 1) {
    my $label = $overwrite ? 'Overwrite' : 'new name';
    for my $point (1 .. 20) {
        reset_trees($overwrite);
        local $ENV{MIRRORDAV_TEST_CRASH_POINT} = $point;
        $s->restart;
        my $code = `${\join ' ', map { "'$_'" } move_cmd($overwrite)}`;
        delete $ENV{MIRRORDAV_TEST_CRASH_POINT};
        crash_server($s);
        if ($code =~ /^20[14]$/) {
            note "$label: the MOVE has $point - 1 crash points";
            cmp_ok $point, '>', 5, "$label: the MOVE went through every crash point";
            $s->restart;
            ok check_round("$label, no crash", $overwrite), "$label: the MOVE completed";
            last;
        }
        my $repair = `$admin fsck --repair --volume $volume 2>&1`;
        is $? >> 8, 0, "$label, crash point $point: fsck --repair resolves it" or diag $repair;
        $s->restart;
        check_round("$label, crash point $point", $overwrite);
    }
}

# ------------------------------------------------------------ random times
my @delays = (0, 0.002, 0.005, 0.01, 0.02, 0.05);
for my $i (0 .. $#delays) {
    my $overwrite = $i % 2;
    reset_trees($overwrite);
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec move_cmd($overwrite);
        exit 127;
    }
    sleep $delays[$i];
    crash_server($s);
    waitpid $pid, 0;
    $s->restart;   # recovery at start, before any request
    check_round("kill after ${\($delays[$i] * 1000)} ms" . ($overwrite ? ', Overwrite' : ''), $overwrite);
}

done_testing;
