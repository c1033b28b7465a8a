#!/usr/bin/env perl
# kill -9 of httpd at random points of PUTs that carry a digest header,
# right or wrong: after the restart the file is exactly the old version
# or (digest right only) exactly the new one, and every hash the server
# then gives out (Repr-Digest sha-256 and sha, oc:checksums) names the
# bytes at the path or is absent, never another version's.
#
# MIRRORDAV_DIGEST_CRASH_ROUNDS (default 12) rounds.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use Digest::SHA qw(sha1 sha256 sha1_hex sha256_hex);
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(time sleep);
use MirrorDAV::Test qw(slurp spew sha1_file);

my $ROUNDS = $ENV{MIRRORDAV_DIGEST_CRASH_ROUNDS} // 12;
my $tmp = tempdir('digest-crash-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $s = MirrorDAV::Test->start_server(
    conf_extra => "<Location /dav>\n  MirrorDAVDigest sha1 sha256\n</Location>");
my $live = $s->live;
my $seed = $ENV{MIRRORDAV_SEED} // int(time);
srand($seed);
diag("seed $seed (MIRRORDAV_SEED=$seed replays this run)");

sub b64 { encode_base64($_[0], '') }
sub rand_data { my $f = "$tmp/new"; system("head -c $_[0] /dev/urandom > $f") == 0 or die; slurp($f) }

# Starts a PUT of FILE with HEADER in a child curl; returns its pid.
sub put_bg {
    my ($file, $header) = @_;
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        { exec 'curl', '-s', '-H', 'Expect:', '-H', $header, '--limit-rate', '20M',
            '-T', $file, $s->url('/dav/v') };
        POSIX::_exit(127);
    }
    return $pid;
}

my $size = 6 << 20;
my $old = rand_data($size);
is($s->put('/dav/v', $old)->{status}, 201, 'first version');

# An undisturbed PUT's duration: the kills land within it.
spew("$tmp/body", rand_data($size));
my $t0 = time;
my $pid = put_bg("$tmp/body", 'Content-Digest: sha-256=:' . b64(sha256(slurp("$tmp/body"))) . ':');
waitpid($pid, 0);
my $dur = time - $t0;
$old = slurp("$live/v");
note(sprintf 'an undisturbed PUT takes %.2f s', $dur);

my %seen;
for my $round (1 .. $ROUNDS) {
    my $new = rand_data($size);
    spew("$tmp/body", $new);
    my $right = $round % 2;
    my $d = $right ? sha256($new) : sha256("x$new");
    my $hdr = $round % 4 < 2 ? 'Content-Digest: sha-256=:' . b64($d) . ':'
                             : 'OC-Checksum: SHA256:' . unpack('H*', $d);
    my $p = put_bg("$tmp/body", $hdr);
    sleep(rand($dur * 1.2));
    $s->crash;
    waitpid($p, 0);
    $s->restart;
    my $now = slurp("$live/v");
    my $which = $now eq $old ? 'old' : $now eq $new ? 'new' : 'neither';
    $seen{($right ? 'right ' : 'wrong ') . $which}++;
    if ($right) {
        ok($which ne 'neither', "round $round (digest right): old or new");
    }
    else {
        is($which, 'old', "round $round (digest wrong): exactly the old version");
    }
    my $r = $s->request('GET', '/dav/v', { 'Want-Repr-Digest' => 'sha-256=5, sha=5' });
    my $rd = $r->{headers}{'repr-digest'};
    my $want = 'sha-256=:' . b64(sha256($now)) . ':, sha=:' . b64(sha1($now)) . ':';
    ok(!defined $rd || $rd eq $want || $rd eq 'sha=:' . b64(sha1($now)) . ':',
       "round $round: Repr-Digest absent or of the bytes at the path") or diag $rd;
    $r = $s->propfind('/dav/v', 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop><oc:checksums/></D:prop></D:propfind>});
    my ($cs) = $r->{content} =~ m{<lp\d+:checksum>([^<]*)</lp\d+:checksum>};
    ok(!defined $cs || $cs =~ /^SHA1:\Q${\sha1_hex($now)}\E( SHA256:\Q${\sha256_hex($now)}\E)?$/,
       "round $round: oc:checksums absent or of the bytes at the path") or diag $cs;
    $old = $now;
}
diag(join ', ', map { "$_: $seen{$_}" } sort keys %seen);

done_testing();
