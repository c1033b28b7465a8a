#!/usr/bin/env perl
# Memory of mirrordav verify is independent of the size of the manifest
# (SPEC section 7, 8): a manifest of 1 000 000 entries, made by this test
# with an independent writer, is verified with a peak RSS under 64 MiB.
# Most entries are missing from the tree, so every one of them flows
# through the merge, the report, the failure log and the checkpoint file.
#   MIRRORDAV_VERIFY_ENTRIES=N   another size (default 1000000)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Path qw(make_path);
use Compress::Zlib ();
use Digest::SHA ();
use MirrorDAV::Test qw(slurp spew);

my $admin = ($ENV{MIRRORDAV_BUILD} // MirrorDAV::Test->build) . "/mirrordav";
my $n     = $ENV{MIRRORDAV_VERIFY_ENTRIES} // 1_000_000;
my $base  = File::Temp::tempdir('verify-mem-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $vol   = "$base/vol";
my $snap  = "$vol/snapshots/big";
make_path("$vol/live", "$vol/state", "$snap/d0000");
spew("$snap/d0000/f0000", "present");

# The manifest: directories of 1000 files, in collation order.
my $sha = Digest::SHA->new(1);
open my $m, '>', "$snap/big.manifest" or die;
sub rec {
    my $l = shift() . ',_internal_record_crc=';
    $l .= sprintf('%08x', Compress::Zlib::crc32("${l}00000000")) . "\n";
    print $m $l;
    $sha->add($l);
}
rec('=header,_internal_type=header,_internal_version=1');
my $per = 1000;
my $h = Digest::SHA::sha1_hex('present');
for my $d (0 .. int(($n - 1) / $per)) {
    my $dn = sprintf 'd%04d', $d;
    for my $f (0 .. $per - 1) {
        last if $d * $per + $f >= $n;
        rec(sprintf '=%s/f%04d,hash=%s,st_size=7,type=file', $dn, $f, $h);
    }
    rec("=$dn,type=directory");
}
rec('=,type=directory');
my $tl = '=trailer,_internal_file_sha1_hash=' . $sha->hexdigest . ',_internal_type=trailer';
$tl .= ',_internal_record_crc=';
$tl .= sprintf('%08x', Compress::Zlib::crc32("${tl}00000000")) . "\n";
print $m $tl;
close $m;
like(`'$admin' manifest check '$snap/big.manifest'`, qr/valid, \d+ entries/,
     "a manifest of $n file entries");

my $out = `/usr/bin/time -f 'maxrss=%M' '$admin' verify --volume '$vol' --snapshot big 2>&1 >/dev/null`;
my ($rss) = $out =~ /maxrss=(\d+)/;
ok(defined $rss, 'the peak RSS was measured') or diag($out);
cmp_ok($rss // 1e9, '<', 64 * 1024, "peak RSS ${\($rss // '?')} KiB, under 64 MiB");
my $log = -s "$vol/state/verify.log";
cmp_ok($log // 0, '>', $n * 50, 'every missing entry was logged');

done_testing;
