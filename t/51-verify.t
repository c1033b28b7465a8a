#!/usr/bin/env perl
# mirrordav verify (SPEC section 8) on a 10 000-file snapshot laid out as
# the snapshot engine lays one out (VOLUME/snapshots/NAME, sidecars
# inside): a clean run, then every discrepancy kind planted at rest and
# reported with the right kind and path and nothing else, the repaired
# manifest in the live tree, sidecar and snapshot records, the failure
# log, JSON, --jobs, a corrupt manifest, and resume after kill -9.
#   MIRRORDAV_VERIFY_KILLS=N   kill/resume rounds (default 6)
# The verifier checkpoints every 500 entries here (the default is every
# second or 50 000 entries), so that kills land between checkpoints.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Path qw(make_path remove_tree);
use Digest::SHA qw(sha1_hex);
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep);
use MirrorDAV::Test qw(slurp spew);

my $admin = ($ENV{MIRRORDAV_BUILD} // MirrorDAV::Test->build) . "/mirrordav";
my $base  = File::Temp::tempdir('verify-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $vol   = "$base/vol";
my $live  = "$vol/live";
make_path("$vol/snapshots", "$vol/state", "$live/backup");

$ENV{MIRRORDAV_VERIFY_CHECKPOINT_ENTRIES} = 500;
my $seed = $ENV{MIRRORDAV_SEED} // time;
srand($seed);
diag("seed $seed");

# The client's tree: 10 000 small files in 100 folders, with its manifest
# uploaded beside it, as a sync client leaves it.
my $client = "$live/backup";
for my $d (0 .. 99) {
    make_path(sprintf "$client/d%02d", $d);
    for my $f (0 .. 99) {
        spew(sprintf("$client/d%02d/f%02d.dat", $d, $f),
             "file $d/$f " . ("x" x int(rand(600))));
    }
}
run_ok("manifest generate '$client' -o '$client/backup.manifest'", 0,
       'the client generates its manifest');
# Receipt records (SHA-1 on receipt), as PUTs would have left them.
run_ok("fsck --volume '$vol' --repair", undef, 'fsck records every hash');

# A hard-link snapshot, as the hardlink backend makes one: data and
# sidecars shared with the live tree.  Faults are planted in private copies
# (unshare) so that the live tree keeps its bytes.
sub snapshot {
    my ($name) = @_;
    system('cp', '-al', $live, "$vol/snapshots/$name") == 0 or die "cp: $?";
}
sub unshare {
    my ($f) = @_;
    system('cp', '-p', $f, "$f.tmp") == 0 && rename("$f.tmp", $f) or die "unshare $f";
}

sub run_ok {
    my ($args, $want, $name) = @_;
    my $out = `'$admin' $args 2>&1`;
    my $rc = $? >> 8;
    if (defined $want) { is($rc, $want, "$name (exit $want)") or diag($out) }
    else { pass($name) }
    return ($out, $rc);
}

sub verify {
    my ($snap, @opt) = @_;
    my $out = `'$admin' verify --volume '$vol' --snapshot $snap @opt 2>/dev/null`;
    return ($out, $? >> 8);
}

sub lines_of { [grep { !/^#/ } split /\n/, $_[0]] }

# ---------------------------------------------------------------- clean
snapshot('clean');
my ($out, $rc) = verify('clean');
is($rc, 0, 'a clean snapshot: exit 0');
is_deeply(lines_of($out), [], 'no discrepancy lines');
like($out, qr/^# clean: 1 manifest\(s\), 10101 entries, 10000 files/m,
     'the summary counts every entry and file');
my $verified = "$live/backup/backup.manifest.verified";
ok(-f $verified, 'the repaired manifest is in the live tree');
my $chk = `'$admin' manifest check '$verified'`;
like($chk, qr/valid, 10101 entries/, 'it is a valid manifest with every entry');
like(slurp("$vol/state/snapshots/clean.rec") // '', qr/^verify_status=clean$/m,
     'the snapshot record says clean');

# ---------------------------------------------------------------- planted
snapshot('bad');
my $s = "$vol/snapshots/bad/backup";
my %want;
{   # one flipped byte in place, mtime kept (damage at rest, shared with
    # the live tree): hash (vs manifest) and sidecar (vs the receipt)
    my $f = "$s/d03/f07.dat";
    system('touch', '-r', $f, "$base/ref") == 0 or die; # times to the ns
    open my $fh, '+<', $f or die; seek $fh, 2, 0; print $fh 'Z'; close $fh;
    system('touch', '-r', "$base/ref", $f) == 0 or die;
    $want{"backup/d03/f07.dat\thash"} = $want{"backup/d03/f07.dat\tsidecar"} = 1;
}
{   # truncated, mtime kept: size
    my $f = "$s/d10/f10.dat";
    unshare($f);
    my $m = (stat $f)[9];
    truncate $f, 3 or die; utime $m, $m, $f;
    $want{"backup/d10/f10.dat\tsize"} = 1;
}
{   # touched: mtime
    my $f = "$s/d20/f20.dat";
    unshare($f);
    utime 1_000_000_000, 1_000_000_000, $f;
    $want{"backup/d20/f20.dat\tmtime"} = 1;
}
unlink "$s/d30/f30.dat" or die;          $want{"backup/d30/f30.dat\tmissing"} = 1;
spew("$s/d40/new.dat", "not in the manifest"); $want{"backup/d40/new.dat\textra"} = 1;
unlink "$s/d50/f50.dat" or die; mkdir "$s/d50/f50.dat" or die;
$want{"backup/d50/f50.dat\ttype"} = 1;

($out, $rc) = verify('bad');
is($rc, 1, 'discrepancies: exit 1');
my %got = map { my @f = split /\t/; ("$f[0]\t$f[1]" => 1) } @{lines_of($out)};
is_deeply(\%got, \%want, 'each planted fault reported with its kind and path, nothing else')
    or diag($out);
like($out, qr/^backup\/d03\/f07\.dat\thash\t[0-9a-f]{40}\t[0-9a-f]{40}$/m,
     'a line is PATH TAB KIND TAB EXPECTED TAB ACTUAL');

# The repaired manifest leaves out exactly the failed entries.
{
    my %rec;
    for my $l (split /\n/, slurp($verified)) {
        $rec{$1} = 1 if $l =~ /^=([^,]*),/;
    }
    my @failed = map { (split /\t/)[0] =~ s{^backup/}{}r } keys %want;
    my @left = grep { $rec{$_} } @failed;
    is_deeply(\@left, [], 'no failed entry is in NAME.verified');
    is(scalar(grep { !/^(header|trailer)$/ } keys %rec), 10101 - 5,
       'every other entry is');
    like(`'$admin' manifest check '$verified'`, qr/valid/, 'and it is valid');
}
like(slurp("$vol/state/snapshots/bad.rec") // '', qr/^verify_discrepancies=7$/m,
     'the snapshot record counts the discrepancies');
{
    my @log = grep { /"snapshot": "bad"/ } split /\n/, slurp("$vol/state/verify.log") // '';
    is(scalar(@log), 7, 'one log line per discrepancy');
    my $j = eval { JSON::PP::decode_json($log[0]) };
    ok($j && $j->{manifest} eq 'backup/backup.manifest' && $j->{kind},
       'log lines are JSON with snapshot, manifest, kind');
}
{   # results in the sidecars of the checked files
    my $dump = `'$admin' sidecar dump '$s/d03/f07.dat' 2>&1`;
    like($dump, qr/_verify/, 'a checked file\'s sidecar holds the result');
}

# JSON, and --jobs 1 gives the same report as the default.
{
    my ($j) = verify('bad', '--json');
    my $doc = eval { JSON::PP::decode_json($j) };
    ok($doc, 'the JSON report parses') or diag($j);
    my %jg = map { ("$_->{path}\t$_->{kind}" => 1) } @{$doc->{discrepancies} // []};
    is_deeply(\%jg, \%want, 'JSON lists the same discrepancies');
    is($doc->{summary}{discrepancies}, 7, 'and counts them');
    my ($one) = verify('bad', '--jobs 1');
    is($one, $out, '--jobs 1 reports exactly what the parallel run does');
}

# ---------------------------------------------------------------- corrupt
snapshot('corrupt');
{
    my $m = "$vol/snapshots/corrupt/backup/backup.manifest";
    unshare($m);
    my $text = slurp($m);
    substr($text, 5000, 1) = substr($text, 5000, 1) eq 'a' ? 'b' : 'a';
    spew($m, $text);
    my ($c, $rc3) = verify('corrupt');
    is($rc3, 3, 'a corrupt manifest: exit 3');
    like($c, qr/^backup\/backup\.manifest\tcorrupt-manifest\tvalid\tline \d+: /m,
         'reported as corrupt-manifest with its line');
    is(scalar(@{lines_of($c)}), 1, 'and nothing else');
}

# ---------------------------------------------------------------- resume
# kill -9 at random points, then --resume: the final report (and the
# repaired manifest) equal the uninterrupted run's.
{
    my ($ref, $refrc) = verify('bad');
    # The header names the run (its time); the entries must be equal.
    my $entries = sub { join "\n", grep { !/^=(header|trailer),/ } split /\n/, slurp($verified) };
    my $refv = $entries->();
    my $rounds = $ENV{MIRRORDAV_VERIFY_KILLS} // 6;
    my ($same, $killed, $resumed) = (0, 0, 0);
    my $body = sub { join "\n", grep { !/^#/ } split /\n/, $_[0] };
    # The report the browser's page reads (state/verify/NAME/report): the
    # run's discrepancy lines, published whole at the end.
    my $report = "$vol/state/verify/bad/report";
    my $refreport = slurp($report);
    is($refreport, $body->($ref) . "\n", "the snapshot's report holds the run's discrepancy lines");
    my ($whole, $after) = (0, 0);
    for my $round (1 .. $rounds) {
        remove_tree("$vol/state/verify/bad");
        my $pid = fork // die;
        if (!$pid) {
            open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
            # 200 us per entry: the 10 000 entries take 2 s at least, so
            # the kill below lands inside the run on any machine.
            $ENV{MIRRORDAV_VERIFY_TEST_DELAY_US} = 200;
            exec $admin, 'verify', '--volume', $vol, '--snapshot', 'bad';
        }
        sleep(0.2 + rand(1.6));
        $killed++ if kill 'KILL', $pid;
        waitpid $pid, 0;
        my $left = slurp($report);
        $whole++ if !defined $left || $left eq $refreport;
        my @ck = glob("$vol/state/verify/bad/*/checkpoint");
        my ($o, $r) = verify('bad', '--resume');
        $after++ if defined $refreport && (slurp($report) // '') eq $refreport;
        $resumed++ if $o =~ /\(resumed from a checkpoint\)$/m;
        note("round $round: checkpoint "
             . (@ck ? 'found' : 'absent') . ($o =~ /resumed/ ? ', resumed' : ''));
        if ($body->($o) eq $body->($ref) && $r == $refrc && $entries->() eq $refv) { $same++ }
        else { diag("round $round differs:\n$o") }
    }
    is($same, $rounds, "after kill -9 ($killed killed mid-run) and --resume, " .
       "the report and NAME.verified equal the uninterrupted run's");
    is($whole, $rounds, 'after each kill -9 the report is absent or whole, never partial');
    is($after, $rounds, 'after each resumed run the report equals the uninterrupted run\'s');
    cmp_ok($resumed, '>=', ($rounds + 1) >> 1,
           "$resumed of $rounds runs continued from a checkpoint (at least half)");
}

done_testing;
