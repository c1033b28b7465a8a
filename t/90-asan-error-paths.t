#!/usr/bin/env perl
# The error paths of a real httpd under AddressSanitizer and UBSan: runs
# the test files below with MIRRORDAV_ASAN=1 (t/lib/MirrorDAV/Test.pm: the
# module from `make asan`, libasan preloaded into httpd, MaxMemFree 1 so
# that freed pools go back to malloc) and passes only when they pass and
# httpd wrote no sanitizer report.  Test.pm explains what ASan cannot see
# inside APR pools.
#   MIRRORDAV_ASAN_TESTS="t/15-copymove.t t/26-proppatch.t"  another list
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use MirrorDAV::Test;

# COPY/MOVE failures, a full disk, oversized and hostile XML, PROPPATCH
# failures (immutable sidecar, the property cap, concurrency).
my @tests = split ' ', ($ENV{MIRRORDAV_ASAN_TESTS}
    // 't/15-copymove.t t/23-full-disk.t t/19-xml-limits.t t/26-proppatch.t');

my $top   = MirrorDAV::Test->top;
my $build = MirrorDAV::Test->build;
chomp(my $libasan = `gcc -print-file-name=libasan.so 2>/dev/null`);
plan skip_all => 'no libasan to preload' unless $libasan && -e $libasan;
is system('make', '-s', '-C', $build, 'asan'), 0, 'the module builds with ASan and UBSan';

my $logs = tempdir('asan-logs-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $logs;
local $ENV{MIRRORDAV_ASAN}          = 1;
local $ENV{MIRRORDAV_ASAN_LOG_DIR}  = $logs;
local $ENV{MIRRORDAV_TOP}           = $top;
local $ENV{MIRRORDAV_BUILD}         = $build;
my $out = `cd '$top' && prove --exec '' -I t/lib @tests 2>&1`;
my $rc = $?;
is $rc, 0, "under ASan: @tests" or diag $out;
my @reports = glob("$logs/*");
is scalar(@reports), 0, 'httpd wrote no ASan or UBSan report'
    or diag join '', map { "== $_\n" . substr(MirrorDAV::Test::slurp($_) // '', 0, 4000) } @reports;

done_testing;
