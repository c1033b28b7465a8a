#!/usr/bin/env perl
# The reflink and btrfs snapshot backends (SPEC section 6) on loop-mounted
# images: XFS with reflink (512 MiB sparse) and btrfs.  For each: a volume
# owned by an unprivileged user (the command drops root, as in
# production), auto-detection, a snapshot equal to live byte for byte with
# its SHA-1 records current, copy-on-write (an in-place write to the live
# file leaves the snapshot's bytes), and space: a 10 MiB file of which
# 128 KiB changed costs under 10.5 MiB across two snapshots (df after
# sync).  Needs root (mount); skips with the reason otherwise.  The images
# are unmounted and removed at the end, also on failure.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Find ();
use File::Path qw(make_path);
use Digest::SHA ();
use MirrorDAV::Test qw(slurp spew);

plan skip_all => 'needs root to loop-mount XFS and btrfs images' if $> != 0;
for my $tool (qw(mkfs.xfs mkfs.btrfs)) {
    plan skip_all => "$tool not installed (script/bootstrap installs it)"
        unless grep { -x "$_/$tool" } split(/:/, "$ENV{PATH}:/sbin:/usr/sbin");
}

my $admin = ($ENV{MIRRORDAV_BUILD} // MirrorDAV::Test->build) . "/mirrordav";
my $base  = File::Temp::tempdir('snapback-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $base; # the volume's owner must reach it
my @mounts;
END {
    local $?;
    system('umount', $_) for reverse @mounts;
}
my $owner = getpwnam('nobody') // 65534;

sub admin {
    my ($args) = @_;
    my $out = `'$admin' $args 2>&1`;
    return ($out, $? >> 8);
}

sub run_ok {
    my ($args, $want, $name) = @_;
    my ($out, $rc) = admin($args);
    is($rc, $want, "$name (exit $want)") or diag($out);
    return $out;
}

sub tree {
    my ($root) = @_;
    my %t;
    File::Find::find({ no_chdir => 1, wanted => sub {
        my $rel = substr($File::Find::name, length $root) || '/';
        return if $rel =~ m{/\.mirrordav/(\.lock|\.tmp-)};
        my @st = lstat($File::Find::name);
        my $d = sprintf "%o %d %d", $st[2], $st[4], $st[9];
        if (-f _) {
            $d .= sprintf " %d %s", $st[7],
                Digest::SHA->new(1)->addfile($File::Find::name)->hexdigest;
        }
        $t{$rel} = $d;
    } }, $root);
    return \%t;
}

# Data files only: in a reflink snapshot the sidecar databases are
# re-bound to the clones' inodes, so they differ from live's by design.
sub data_tree {
    my $t = tree(@_);
    delete $t->{$_} for grep { m{/\.mirrordav(/|$)} } keys %$t;
    return $t;
}

sub same_tree {
    my ($got, $want, $name) = @_;
    my @diff = grep { ($got->{$_} // '-') ne ($want->{$_} // '-') }
               sort keys %{{ %$got, %$want }};
    ok(!@diff, $name) or diag(join "\n", map {
        "$_: got " . ($got->{$_} // 'missing') . ", want " . ($want->{$_} // 'missing')
    } @diff[0 .. ($#diff < 9 ? $#diff : 9)]);
}

sub fsck_clean {
    my ($tree, $name) = @_;
    my $fv = "$base/fv-" . int(rand(1e9));
    make_path($fv);
    symlink($tree, "$fv/live") or die;
    my ($out) = admin("fsck --volume '$fv'");
    like($out, qr/ 0 problems/, $name) or diag($out);
}

sub used_kib {
    my ($mnt) = @_;
    system('sync');
    system('btrfs', 'filesystem', 'sync', $mnt) if -e "$mnt/.btrfs-marker";
    return (split ' ', (`df -k --output=used '$mnt'`)[1])[0];
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
    spew("$mnt/.btrfs-marker", '') if $fs eq 'btrfs';
    my $vol  = "$mnt/vol";
    my $live = "$vol/live";
    my $out  = run_ok("volume init '$vol'", 0, "$fs: volume init");
    like($out, $fs eq 'btrfs' ? qr/is a btrfs subvolume/ : qr/is a directory/,
         "$fs: live/ " . ($fs eq 'btrfs' ? 'made a subvolume' : 'a directory'));
    for my $d (qw(a a/b c)) {
        make_path("$live/$d");
        spew("$live/$d/f$_", "$d $_ " . ('y' x ($_ * 300))) for 1 .. 5;
    }
    chmod 0640, "$live/a/f2";
    utime 1_400_000_000, 1_400_000_000, "$live/c/f1";
    system('chown', '-R', "$owner", $vol) == 0 or die;
    run_ok("fsck --volume '$vol' --repair", 0, "$fs: SHA-1 records");
    run_ok("sidecar set '$live/a/f1' '{DAV:}displayname' 'A one'", 0,
           "$fs: a dead property");
    my $used0 = used_kib($mnt);

    system("dd if=/dev/urandom of='$live/big' bs=1M count=10 status=none") == 0
        or die;
    system('chown', $owner, "$live/big");
    run_ok("fsck --volume '$vol' --repair", 0, "$fs: the big file's record");
    $out = run_ok("snapshot create s1 --volume '$vol'", 0, "$fs: create s1 (auto)");
    like($out, qr/s1: $backend, 16 files, \d+ bytes/, "$fs: detected $backend");
    my $s1 = "$vol/snapshots/s1";
    my $big_s1 = Digest::SHA->new(1)->addfile("$live/big")->hexdigest;
    same_tree(data_tree($s1), data_tree($live),
              "$fs: s1 equals live: bytes, modes, owners, mtimes");
    is((stat "$s1/big")[4], $owner, "$fs: files owned by the volume's owner");
    like(scalar `'$admin' sidecar get '$s1/a/f1' '{DAV:}displayname'`,
         qr/A one/, "$fs: dead property in the snapshot");
    fsck_clean($s1, "$fs: snapshot SHA-1 records current");
    fsck_clean($live, "$fs: live SHA-1 records current");
    isnt((stat "$s1/big")[1] . (stat _)[0],
         (stat "$live/big")[1] . (stat _)[0], "$fs: the snapshot's file is its own inode")
        if $fs eq 'xfs';

    # In place (allowed at this level: the live file is its own inode).
    system("dd if=/dev/urandom of='$live/big' bs=128K count=1 seek=20 "
           . "conv=notrunc status=none") == 0 or die;
    isnt(Digest::SHA->new(1)->addfile("$live/big")->hexdigest, $big_s1,
         "$fs: live changed");
    is(Digest::SHA->new(1)->addfile("$s1/big")->hexdigest, $big_s1,
       "$fs: s1 keeps the old bytes (copy-on-write)");
    run_ok("snapshot create s2 --volume '$vol' --backend $backend", 0,
           "$fs: create s2 (--backend $backend)");
    my $used1 = used_kib($mnt);
    is(Digest::SHA->new(1)->addfile("$vol/snapshots/s2/big")->hexdigest,
       Digest::SHA->new(1)->addfile("$live/big")->hexdigest,
       "$fs: s2 has the new bytes");
    cmp_ok($used1 - $used0, '<', 10.5 * 1024,
           "$fs: 10 MiB file, 128 KiB changed, two snapshots: "
           . ($used1 - $used0) . " KiB used in all");

    run_ok("snapshot create s3 --volume '$vol' --backend hardlink", 0,
           "$fs: hardlink forced works too") if $fs eq 'xfs';
    # The in-place write left big's record stale; record it again, as a
    # PUT would have.
    run_ok("fsck --volume '$vol' --repair", 0, "$fs: record the new bytes");
    run_ok("snapshot delete s1 --volume '$vol'", 0, "$fs: delete s1");
    ok(!-e $s1, "$fs: s1 gone");
    is(Digest::SHA->new(1)->addfile("$vol/snapshots/s2/big")->hexdigest,
       Digest::SHA->new(1)->addfile("$live/big")->hexdigest,
       "$fs: s2 intact");
    fsck_clean($live, "$fs: live records current after the delete");
    $out = run_ok("snapshot list --volume '$vol'", 0, "$fs: list");
    like($out, qr/^s2\s+\S+\s+$backend\s+16\s/m, "$fs: s2 listed");
    unlike($out, qr/^s1\s/m, "$fs: s1 not listed");
}

done_testing();
