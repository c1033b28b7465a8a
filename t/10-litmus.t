#!/usr/bin/env perl
# The public WebDAV suite litmus: `basic`, `copymove`, `props`, `locks` and `http` pass every
# test with no warnings (SPEC section 2).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use MirrorDAV::Test qw(slurp);

my @suites = qw(basic copymove props locks http);

my $srv = MirrorDAV::Test->start_server;
my $r = $srv->mkcol('/dav/litmus');
is($r->{status}, 201, 'MKCOL /dav/litmus') or diag($r->{content});

# litmus writes debug.log and child.log into its working directory.
my $wd = File::Temp::tempdir('litmus-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $url = $srv->url('/dav/litmus/');
local $ENV{TESTS} = join ' ', @suites;
my $out = `cd '$wd' && timeout 240 litmus -k '$url' 2>&1`;
my $rc = $? >> 8;
isnt($rc, 124, 'litmus finished within its time limit');

# Split the output into one section per suite.
my %section;
my $cur;
for my $line (split /\n/, $out) {
    if ($line =~ /^-> running `([^']+)':/) {
        $cur = $1;
        $section{$cur} = '';
        next;
    }
    $section{$cur} .= "$line\n" if defined $cur;
}

my $all_ok = 1;
for my $suite (@suites) {
    my $text = $section{$suite};
    $all_ok &= ok(defined $text, "suite $suite ran");
    $text //= '';
    my ($run, $passed, $failed) =
        $text =~ /<- summary for `\Q$suite\E': of (\d+) tests run: (\d+) passed, (\d+) failed/;
    $all_ok &= ok(defined $run, "$suite: summary line present");
    $all_ok &= is($failed, 0, "$suite: 0 failed");
    $all_ok &= ok(defined $run && $passed == $run && $run > 0,
                  "$suite: all ${\($run // '?')} tests passed");

    my @warn = grep { /WARNING:/ || /with \d+ warnings?\)/ } split /\n/, $text;
    my ($issued) = $text =~ /^-> (\d+) warnings? (?:was|were) issued\./m;
    $all_ok &= is($issued // 0, 0, "$suite: no warnings issued");
    $all_ok &= is(scalar(@warn), 0, "$suite: no WARNING lines")
        or diag(join "\n", @warn);
}

unless ($all_ok) {
    diag("litmus output:\n$out");
    my $dbg = slurp("$wd/debug.log");
    diag("litmus debug.log (tail):\n" . substr($dbg, -3000)) if defined $dbg;
}

done_testing;
