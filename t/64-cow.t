#!/usr/bin/env perl
# Exact copy-on-write (SPEC section 6), hardlink backend: after a snapshot,
# no operation on the live tree changes a single byte of it.  Build a tree
# with dead properties, snapshot it, record every file's bytes, size,
# mtime (ns), mode and xattrs and every sidecar's dump, hammer the live
# tree (PUT over files, PROPPATCH, Win32LastModifiedTime, X-OC-Mtime,
# MOVE, COPY, DELETE, LOCK on new and existing paths, mirrordav fsck
# --repair: t/lib/MirrorDAV/CowHammer.pm, which t/67 runs on reflink and
# btrfs), and compare.  Then kill -9 of httpd amid PROPPATCHes that break the
# sharing.  (ctime and link counts are not part of a file's content:
# link(2) and unlink(2) of another name move them.)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA ();
use POSIX ();
use Time::HiRes qw(sleep);
use MirrorDAV::Test qw(slurp spew);
use MirrorDAV::CowHammer qw(build_tree hammer tree_diff ok_status);

my $srv   = MirrorDAV::Test->start_server;
my $vol   = $srv->volume;
my $build = $ENV{MIRRORDAV_BUILD} || MirrorDAV::Test::build();
my $snap  = "$vol/snapshots/s1";
sub setprop { MirrorDAV::CowHammer::setprop($srv, @_) }
sub record_tree { MirrorDAV::CowHammer::record_tree($build, @_) }

# ---------------------------------------------------------------- the tree
build_tree($srv);
my $r = $srv->mkcol('/snapshots/s1');
is($r->{status}, 201, 'snapshot s1 (hardlink)') or diag($r->{content});
my $before = record_tree($snap);
ok(scalar(grep /^sidecar /, keys %$before) >= 15, 'sidecars recorded')
    or diag(join "\n", sort keys %$before);
like($before->{'sidecar a.txt'}, qr/color/, 'a dump holds the dead properties');
like($before->{xattrs}, qr/user\.mirrordav/, 'the sidecar xattr marks are recorded');
is((stat "$vol/live/e.txt")[3], 2, 'live and snapshot share e.txt (link count 2)');

# ---------------------------------------------------------------- hammer
hammer($srv, $build);
is((stat "$vol/live/e.txt")[3], 1, 'the live e.txt is in an inode of its own');

# ---------------------------------------------------------------- compare
my $after = record_tree($snap);
my @diff = tree_diff($before, $after);
is_deeply(\@diff, [], 'the snapshot is unchanged to the byte: data, sizes, modes, '
                    . 'mtimes, xattrs and every sidecar')
    or diag(join "\n", map { "$_:\n  before: " . ($before->{$_} // '<none>')
                                   . "\n  after:  " . ($after->{$_} // '<none>') } @diff);

# ---------------------------------------------------------------- crashes
# kill -9 of httpd while PROPPATCHes give shared files a private copy
# (cow.c): every live file keeps its bytes, with its old mtime or the new
# one, and no snapshot changes.  MIRRORDAV_CRASH_ROUNDS sets the rounds.
my $ROUNDS = $ENV{MIRRORDAV_CRASH_ROUNDS} || 4;
my @names = map { sprintf 'f%02d.txt', $_ } 0 .. 29;
ok_status($srv->mkcol('/dav/crash'), 'MKCOL crash');
for my $n (@names) { ok_status($srv->put("/dav/crash/$n", "bytes of $n\n" x 100), "PUT crash/$n") }
my %old_mtime = map { ($_ => (stat "$vol/live/crash/$_")[9]) } @names;
my (%snap_before, @bad);
for my $round (1 .. $ROUNDS) {
    my $name = "crash$round";
    my $r = $srv->mkcol("/snapshots/$name");
    is($r->{status}, 201, "round $round: snapshot $name") or diag($r->{content});
    $snap_before{$name} = record_tree("$vol/snapshots/$name");
    my $new_mtime = 1795080642 + 3600 * $round;   # a new time each round
    my $date = POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime $new_mtime);
    my $pid = fork // die;
    if (!$pid) {
        for my $n (@names) {
            setprop("/dav/crash/$n", "<W:Win32LastModifiedTime>$date</W:Win32LastModifiedTime>");
        }
        POSIX::_exit(0);
    }
    sleep(0.02 + rand(0.25));
    $srv->crash;
    waitpid($pid, 0);
    $srv->restart;
    for my $n (@names) {
        my $f = "$vol/live/crash/$n";
        push @bad, "round $round: $n bytes" if (slurp($f) // '') ne "bytes of $n\n" x 100;
        my $m = (stat $f)[9] // -1;
        push @bad, "round $round: $n mtime $m" if $m != $old_mtime{$n} && $m != $new_mtime;
        $old_mtime{$n} = $m;
    }
}
is_deeply(\@bad, [], 'after every crash each live file has its bytes, and its old mtime or the new one');
# What a crash leaves in the sidecar folder is fsck's to remove once old
# (.cow-*, by ctime), never an orphan or a damaged sidecar.
my $fsck = `'$build/mirrordav' fsck --volume '$vol' 2>&1`;
unlike($fsck, qr/\.cow-/, 'fsck takes crash leftovers (.cow-*) for young temporary files') or diag($fsck);
my @changed;
for my $name (sort keys %snap_before) {
    my $now = record_tree("$vol/snapshots/$name");
    push @changed, map { "$name: $_" }
        grep { ($snap_before{$name}{$_} // '') ne ($now->{$_} // '') }
        sort(keys %{{ %{ $snap_before{$name} }, %$now }});
}
is_deeply(\@changed, [], 'no crash changed a snapshot') or diag(join "\n", @changed);
unlike(join('', `curl -s -X PROPFIND -H 'Depth: 1' '${\$srv->url('/dav/crash/')}'`), qr/\.cow-|\.mirrordav/,
       'no leftover is visible over WebDAV');

done_testing();
