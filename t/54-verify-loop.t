#!/usr/bin/env perl
# The verifier's whole loop, through the server (SPEC section 8): a client
# uploads a tree and its manifest with PUT, a snapshot is taken, the data
# is damaged at rest, `mirrordav verify` finds it, the repaired manifest
# (NAME.verified, fetched by the client with GET) leaves out exactly the
# damaged files, the client re-sends exactly those, and the next snapshot
# verifies clean.  Snapshots are made as the hardlink backend makes them
# (a tree of hard links under VOLUME/snapshots/NAME).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Path qw(make_path);
use MirrorDAV::Test qw(slurp spew);

my $admin = ($ENV{MIRRORDAV_BUILD} // MirrorDAV::Test->build) . "/mirrordav";
my $srv = MirrorDAV::Test->start_server;
my $vol = $srv->volume;
my $tmp = File::Temp::tempdir('verify-loop-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $client = "$tmp/client";

# The client's tree.
my @files;
for my $d (qw(docs photos photos/2026)) {
    make_path("$client/$d");
    for my $i (1 .. 8) {
        my $f = "$d/file$i.bin";
        spew("$client/$f", join('', map { chr(rand 256) } 1 .. 2000 + $i));
        push @files, $f;
    }
}
system("'$admin' manifest generate '$client' -o '$client/sync.manifest' 2>/dev/null") == 0
    or die 'manifest generate';

# Upload: collections, files with their mtimes (X-OC-Mtime), the manifest.
sub upload {
    my ($rel) = @_;
    my $mtime = (stat "$client/$rel")[9];
    my $r = $srv->put("/dav/$rel", slurp("$client/$rel"), {'X-OC-Mtime' => $mtime});
    return $r->{status};
}
for my $d (qw(docs photos photos/2026)) {
    is($srv->mkcol("/dav/$d")->{status}, 201, "MKCOL $d");
}
my $bad = 0;
$bad++ for grep { upload($_) !~ /^20[14]$/ } @files, 'sync.manifest';
is($bad, 0, 'every file and the manifest uploaded');

sub snapshot {
    my ($name) = @_;
    system('cp', '-al', "$vol/live", "$vol/snapshots/$name") == 0 or die;
}
sub verify {
    my ($snap) = @_;
    my $out = `'$admin' verify --volume '$vol' --snapshot $snap 2>&1`;
    return ($out, $? >> 8);
}

snapshot('night1');
my ($out, $rc) = verify('night1');
is($rc, 0, 'the first snapshot verifies clean') or diag($out);

# Damage at rest: two files (shared by the live tree and the snapshot).
my @damaged = ('docs/file3.bin', 'photos/2026/file7.bin');
for my $f (@damaged) {
    my $p = "$vol/live/$f";
    system('touch', '-r', $p, "$tmp/ref") == 0 or die;
    open my $fh, '+<', $p or die; seek $fh, 100, 0; print $fh "rot"; close $fh;
    system('touch', '-r', "$tmp/ref", $p) == 0 or die;
}
snapshot('night2');
($out, $rc) = verify('night2');
is($rc, 1, 'the damage is found (exit 1)');
my %kinds;
for (grep { !/^#/ } split /\n/, $out) { my @f = split /\t/; $kinds{"$f[0] $f[1]"} = 1 }
is_deeply(\%kinds, {map { ("$_ hash" => 1, "$_ sidecar" => 1) } @damaged},
          'hash and sidecar for each damaged file, nothing else') or diag($out);

# The client fetches the repaired manifest and re-sends what it lacks.
my $r = $srv->get('/dav/sync.manifest.verified');
is($r->{status}, 200, 'the client GETs sync.manifest.verified');
my %kept = map { /^=([^,]*),/ ? ($1 => 1) : () } split /\n/, $r->{content};
my @resend = grep { !$kept{$_} } @files;
is_deeply([sort @resend], [sort @damaged], 'it names exactly the files to re-send');
$bad = 0;
$bad++ for grep { upload($_) !~ /^20[14]$/ } @resend;
is($bad, 0, 'the client re-sends them');

snapshot('night3');
($out, $rc) = verify('night3');
is($rc, 0, 'the next snapshot verifies clean') or diag($out);
for my $f (@damaged) {
    is(slurp("$vol/snapshots/night3/$f"), slurp("$client/$f"), "$f is whole again");
}

done_testing;
