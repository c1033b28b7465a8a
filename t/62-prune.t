#!/usr/bin/env perl
# mirrordav snapshot prune (SPEC section 6), restic/borg `forget` rules:
# 800 daily snapshots over two years plus extras on some days; prune
# --keep-daily 30 --keep-monthly 12 --keep-yearly 5 keeps exactly the set
# computed independently here; pinned snapshots survive; --dry-run removes
# nothing; no policy at all is refused.  The snapshots are made by hand as
# the engine leaves them (an empty directory in snapshots/ and a record in
# state/snapshots/), which is all prune looks at.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Path qw(make_path);
use POSIX qw(strftime);
use MirrorDAV::Test qw(spew);

my $admin = ($ENV{MIRRORDAV_BUILD} // MirrorDAV::Test->build) . "/mirrordav";
my $base  = File::Temp::tempdir('prune-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $vol   = "$base/vol";
make_path("$vol/live", "$vol/snapshots", "$vol/state/snapshots");
my $seed = $ENV{MIRRORDAV_SEED} // time;
srand($seed);
diag("seed $seed");

sub admin {
    my ($args) = @_;
    my $out = `'$admin' $args 2>&1`;
    return ($out, $? >> 8);
}

# 800 days from 2024-01-01 03:00 UTC (a leap year: Feb 29 is in), with
# 1 to 3 extra snapshots later on one day in four; a gap of 9 days (no
# snapshot at all) in the last month, so that periods without a
# snapshot must not count.
my $t0 = 1704078000;    # 2024-01-01T03:00:00Z
my %created;
for my $day (0 .. 799) {
    next if $day >= 780 && $day < 789;
    my $t = $t0 + $day * 86400;
    $created{ strftime('nightly-%Y%m%dT%H%M%SZ', gmtime $t) } = $t;
    next if rand() >= 0.25;
    for my $x (1 .. 1 + int rand 3) {
        my $tx = $t + $x * 3 * 3600 + int rand 3000;
        $created{ strftime('extra-%Y%m%dT%H%M%SZ', gmtime $tx) } = $tx;
    }
}
for my $name (keys %created) {
    make_path("$vol/snapshots/$name");
    spew("$vol/state/snapshots/$name.rec",
         "name=$name\ncreated=$created{$name}\nbackend=hardlink\nfiles=0\nbytes=0\n");
}
my $total = keys %created;
diag("$total snapshots");

# The independent computation: newest first; for each policy, the newest
# snapshot of each of the N most recent periods that have one.
my @newest = sort { $created{$b} <=> $created{$a} || $b cmp $a } keys %created;
my %expect;
for my $rule (['%Y-%m-%d', 30], ['%Y-%m', 12], ['%Y', 5]) {
    my ($fmt, $n) = @$rule;
    my %seen;
    for my $s (@newest) {
        last if keys %seen == $n;
        my $p = strftime($fmt, gmtime $created{$s});
        next if $seen{$p}++;
        $expect{$s} = 1;
    }
}
# 30 dailies + 12 monthlies (the current month's newest is shared with
# the dailies) + yearlies 2026, 2025, 2024 (the newest of each year).
my $n_expect = keys %expect;
cmp_ok($n_expect, '>=', 30 + 10, "expected set computed ($n_expect)");

# Three pins among those the policy removes.
my @removed_by_policy = grep { !$expect{$_} } @newest;
my @pins = @removed_by_policy[5, 100, -1];
for my $p (@pins) {
    my ($o, $rc) = admin("snapshot pin $p --volume '$vol'");
    is($rc, 0, "pin $p") or diag($o);
}
my ($o, $rc) = admin("snapshot pin nosuch --volume '$vol'");
is($rc, 1, 'pinning a missing snapshot fails');

($o, $rc) = admin("snapshot prune --volume '$vol'");
is($rc, 2, 'prune without a policy is refused');
like($o, qr/no --keep-\* option/, '... saying why');

my $policy = '--keep-daily 30 --keep-monthly 12 --keep-yearly 5';
($o, $rc) = admin("snapshot prune --volume '$vol' $policy --dry-run");
is($rc, 0, 'dry run');
my %dry_keep = map { /^keep\s+(\S+)/ ? ($1 => 1) : () } split /\n/, $o;
my %dry_rm = map { /^would remove\s+(\S+)/ ? ($1 => 1) : () } split /\n/, $o;
is_deeply(\%dry_keep, { %expect, map { $_ => 1 } @pins },
          'dry run keeps exactly the expected set and the pins');
is(scalar(keys %dry_rm), $total - $n_expect - 3, 'and would remove the rest');
my @left = grep { !/^\./ } map { s{.*/}{}r } glob("$vol/snapshots/*");
is(scalar @left, $total, 'dry run removed no snapshot');
my @recs = glob("$vol/state/snapshots/*.rec");
is(scalar @recs, $total, 'dry run removed no record');
like($o, qr/^keep\s+\Q$pins[0]\E\s+\S+\s+pinned$/m, 'a pin shown as the reason');

($o, $rc) = admin("snapshot prune --volume '$vol' $policy");
is($rc, 0, 'prune') or diag($o);
@left = grep { !/^\./ } map { s{.*/}{}r } glob("$vol/snapshots/*");
is_deeply([sort @left], [sort(keys %expect, @pins)],
          'exactly the expected snapshots and the pins remain');
@recs = sort map { s{.*/}{}r =~ s/\.rec$//r } glob("$vol/state/snapshots/*.rec");
is_deeply(\@recs, [sort @left], 'and exactly their records');
ok(!(() = glob("$vol/snapshots/.tmp-*")), 'no leftovers');

# The same again changes nothing (idempotent); then the pins go once
# unpinned.
($o, $rc) = admin("snapshot prune --volume '$vol' $policy");
like($o, qr/^0 removed/m, 'a second prune removes nothing');
admin("snapshot unpin $_ --volume '$vol'") for @pins;
($o, $rc) = admin("snapshot prune --volume '$vol' $policy");
like($o, qr/^3 removed/m, 'unpinned, the three go');
ok(!-e "$vol/snapshots/$_", "$_ removed") for @pins;

# --keep-last and a union with it.
($o, $rc) = admin("snapshot prune --volume '$vol' --keep-last 3 --dry-run");
my @kl = map { /^keep\s+(\S+)/ ? $1 : () } split /\n/, $o;
my @remaining = grep { $expect{$_} } @newest;    # still newest first
is_deeply([sort @kl], [sort @remaining[0 .. 2]], '--keep-last 3: the three newest');

# The nightly unit's commands, as systemd runs them (%% is %, ${VAR}
# expanded), on a fresh volume: a time-sorted name, then the default prune.
{
    my $unit = MirrorDAV::Test->top . '/conf/mirrordav-snapshot.service';
    open my $fh, '<', $unit or die "$unit: $!";
    my %cmd = map { /^(ExecStart|ExecStartPost)=(.*)$/ ? ($1 => $2) : () } <$fh>;
    my $v = "$base/nightly";
    make_path("$v/live", "$v/snapshots", "$v/state");
    spew("$v/live/f", "x");
    for my $k (qw(ExecStart ExecStartPost)) {
        my $c = $cmd{$k} // '';
        $c =~ s/%%/%/g;
        $c =~ s/\$\{MIRRORDAV_VOLUME\}/$v/g;
        $c =~ s{/usr/local/bin/mirrordav}{$admin}g;
        my $out = `$c 2>&1`;
        is($?, 0, "unit's $k runs") or diag("$c\n$out");
    }
    my @n = map { s{.*/}{}r } glob("$v/snapshots/*");
    is(scalar @n, 1, 'one snapshot');
    like($n[0] // '', qr/^nightly-\d{8}T\d{6}Z$/, "named to sort by time ($n[0])");
    like($cmd{ExecStartPost} // '',
         qr/--keep-daily 30 --keep-monthly 12 --keep-yearly 5/, 'default policy');
}

done_testing();
