#!/usr/bin/env perl
# Exact copy-on-write through the server on the reflink and btrfs backends
# (SPEC section 6): t/64's hammer (t/lib/MirrorDAV/CowHammer.pm) against a
# server whose volume is on a loop-mounted XFS image (mkfs.xfs -m
# reflink=1) and on a btrfs image, made with `mirrordav volume init`, the
# snapshot taken by MKCOL /snapshots/s1 with the backend detected (auto)
# and checked in its record (backend=).  After the hammer the snapshot is
# unchanged to the byte: data, sizes, modes, mtimes, xattrs and every
# sidecar's dump.  Needs root (mount); skips with the reason otherwise.
# The images are unmounted and removed at the end, also on failure.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Path qw(make_path);
use MirrorDAV::Test qw(slurp);
use MirrorDAV::CowHammer qw(build_tree hammer record_tree tree_diff);

plan skip_all => 'needs root to loop-mount XFS and btrfs images' if $> != 0;
for my $tool (qw(mkfs.xfs mkfs.btrfs)) {
    plan skip_all => "$tool not installed (script/bootstrap installs it)"
        unless grep { -x "$_/$tool" } split(/:/, "$ENV{PATH}:/sbin:/usr/sbin");
}

my $build = $ENV{MIRRORDAV_BUILD} || MirrorDAV::Test::build();
my $base  = File::Temp::tempdir('cowback-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $base;   # the server's user must reach the volume
my (@mounts, @servers);
# Runs before MirrorDAV::Test's END (END blocks run last-defined first):
# the servers must be gone before their file systems can be unmounted.
END {
    local $?;
    $_->stop for grep { defined } @servers;
    for my $m (reverse @mounts) {
        system('umount', $m) == 0 or system('umount', '-l', $m);
    }
}

for my $case (['xfs', 'reflink', 'mkfs.xfs -q -f -m reflink=1'],
              ['btrfs', 'btrfs', 'mkfs.btrfs -q -f']) {
    my ($fs, $backend, $mkfs) = @$case;
    my ($img, $mnt) = ("$base/$fs.img", "$base/$fs");
    make_path($mnt);
    if (system("truncate -s 512M '$img' && $mkfs '$img' >/dev/null 2>&1"
               . " && mount -o loop '$img' '$mnt'") != 0) {
        fail("$fs: make and mount the image");
        next;
    }
    push @mounts, $mnt;
    chmod 0755, $mnt;
    my $vol = "$mnt/vol";
    my $out = `'$build/mirrordav' volume init '$vol' 2>&1`;
    is($? >> 8, 0, "$fs: mirrordav volume init") or diag($out);
    like($out, $fs eq 'btrfs' ? qr/is a btrfs subvolume/ : qr/is a directory/,
         "$fs: live/ " . ($fs eq 'btrfs' ? 'is a subvolume' : 'is a directory'));

    my $srv = MirrorDAV::Test->start_server(volume => $vol);
    push @servers, $srv;
    note("$fs: the tree");
    build_tree($srv);
    my $r = $srv->mkcol('/snapshots/s1');
    is($r->{status}, 201, "$fs: MKCOL /snapshots/s1") or diag($r->{content});
    like(slurp("$vol/state/snapshots/s1.rec") // '', qr/^backend=$backend$/m,
         "$fs: the record says backend=$backend");
    my $snap   = "$vol/snapshots/s1";
    my $before = record_tree($build, $snap);
    ok(scalar(grep /^sidecar /, keys %$before) >= 15, "$fs: sidecars recorded")
        or diag(join "\n", sort keys %$before);
    like($before->{'sidecar a.txt'}, qr/color/, "$fs: a dump holds the dead properties");
    like($before->{xattrs}, qr/user\.mirrordav/, "$fs: the sidecar xattr marks are recorded");

    note("$fs: the hammer");
    hammer($srv, $build);

    my $after = record_tree($build, $snap);
    my @diff = tree_diff($before, $after);
    is_deeply(\@diff, [], "$fs: the snapshot is unchanged to the byte: data, sizes, "
                        . 'modes, mtimes, xattrs and every sidecar')
        or diag(join "\n", map { "$_:\n  before: " . ($before->{$_} // '<none>')
                                       . "\n  after:  " . ($after->{$_} // '<none>') } @diff);
    is($srv->delete('/snapshots/s1')->{status}, 204, "$fs: DELETE /snapshots/s1");
    $srv->stop;
}

done_testing();
