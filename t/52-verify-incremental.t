#!/usr/bin/env perl
# mirrordav verify --since-verified (SPEC section 8; incremental): after 1%
# of the files changed between two hard-link snapshots, the second run
# reads about 1% of the bytes (the job's own counters and /proc/self/io),
# takes the rest from the first run's clean results, and still reports a
# corruption planted in a changed file.  A --pending run verifies every
# unverified snapshot, oldest first.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Path qw(make_path);
use JSON::PP ();
use MirrorDAV::Test qw(slurp spew);

my $admin = ($ENV{MIRRORDAV_BUILD} // MirrorDAV::Test->build) . "/mirrordav";
my $base  = File::Temp::tempdir('verify-inc-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $vol   = "$base/vol";
my $live  = "$vol/live";
make_path("$vol/snapshots", "$vol/state/snapshots", "$live/b");

my $MiB = 1024 * 1024;
my $nfiles = 100;
open my $rnd, '<', '/dev/urandom' or die;
for my $i (0 .. $nfiles - 1) {
    read($rnd, my $data, $MiB) == $MiB or die;
    spew(sprintf("$live/b/f%03d", $i), $data);
}

sub admin { my $o = `'$admin' @_ 2>&1`; return wantarray ? ($o, $? >> 8) : $o }
sub snapshot {
    my ($name, $created) = @_;
    system('cp', '-al', $live, "$vol/snapshots/$name") == 0 or die;
    # the snapshot engine's record: its creation time
    spew("$vol/state/snapshots/$name.rec", "name=$name\ncreated=$created\n");
}
sub verify_json {
    my ($snap, @opt) = @_;
    my $out = `'$admin' verify --volume '$vol' --snapshot $snap --json @opt 2>/dev/null`;
    my $rc = $? >> 8;
    my $doc = eval { JSON::PP::decode_json($out) } or diag("bad JSON: $out");
    return ($doc // {}, $rc);
}

admin("manifest generate '$live/b' -o '$live/b/b.manifest'");
admin("fsck --volume '$vol' --repair");
snapshot('s1', 1000);
my ($d1, $rc1) = verify_json('s1');
is($rc1, 0, 'the first snapshot verifies clean');
is($d1->{summary}{reused_files}, 0, 'with nothing to take from');
cmp_ok($d1->{summary}{bytes_read}, '==', $nfiles * $MiB, 'reading every byte');

# One file of the hundred changes (a new version, as a PUT writes one).
{
    read($rnd, my $data, $MiB) == $MiB or die;
    spew("$live/b/f042.new", $data);
    rename "$live/b/f042.new", "$live/b/f042" or die;
}
admin("manifest generate '$live/b' -o '$live/b/b.manifest'");
admin("fsck --volume '$vol' --repair");
snapshot('s2', 2000);
# Damage at rest in the changed file (shared with the live tree).
{
    my $f = "$vol/snapshots/s2/b/f042";
    system('touch', '-r', $f, "$base/ref") == 0 or die; # times to the ns
    open my $fh, '+<', $f or die; seek $fh, 12345, 0; print $fh "\x00\xff"; close $fh;
    system('touch', '-r', "$base/ref", $f) == 0 or die;
}

my ($d2, $rc2) = verify_json('s2', '--since-verified');
my $sum = $d2->{summary};
is($rc2, 1, 'the incremental run finds the damage (exit 1)');
my %kinds = map { ("$_->{path} $_->{kind}" => 1) } @{$d2->{discrepancies}};
is_deeply(\%kinds, {'b/f042 hash' => 1, 'b/f042 sidecar' => 1},
          'reported in the changed file: hash, and sidecar (the receipt record)');
is($sum->{reused_files}, $nfiles - 1, '99 files taken from the earlier clean result');
cmp_ok($sum->{bytes_read}, '<=', 1.01 * $MiB,
       'the job read about 1% of the bytes (' . $sum->{bytes_read} . ')');
cmp_ok($sum->{proc_rchar}, '<', 0.03 * $nfiles * $MiB,
       "the process read $sum->{proc_rchar} bytes in all (/proc/self/io): under 3%");
diag("incremental: $sum->{bytes_read} data bytes, $sum->{proc_rchar} bytes read in all, " .
     "of " . ($nfiles * $MiB));

# A full run reads everything again.
my ($d3) = verify_json('s2');
cmp_ok($d3->{summary}{bytes_read}, '>=', ($nfiles - 1) * $MiB,
       'without --since-verified every byte is read');

# --pending: the snapshots with no result, oldest first.
snapshot('s4', 4000);
snapshot('s3', 3000);
my ($out, $rc) = admin("verify --volume '$vol' --pending");
my @order = $out =~ /^# (s\d): /mg;
is_deeply(\@order, ['s3', 's4'], '--pending verifies the unverified ones, oldest first');
like(slurp("$vol/state/snapshots/s4.rec") // '', qr/^verify_time=\d+$/m,
     'and records their results');
($out) = admin("verify --volume '$vol' --pending");
unlike($out, qr/^# s\d/m, 'a second --pending finds nothing left');

done_testing;
