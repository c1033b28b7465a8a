#!/usr/bin/env perl
# Exact copy-on-write (SPEC section 6), hardlink backend: after a snapshot,
# no operation on the live tree changes a single byte of it.  Build a tree
# with dead properties, snapshot it, record every file's bytes, size,
# mtime (ns), mode and xattrs and every sidecar's dump, hammer the live
# tree (PUT over files, PROPPATCH, Win32LastModifiedTime, X-OC-Mtime, MOVE,
# COPY, DELETE, LOCK on new and existing paths, mirrordav fsck --repair),
# and compare.  Then kill -9 of httpd amid PROPPATCHes that break the
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

my $srv   = MirrorDAV::Test->start_server;
my $vol   = $srv->volume;
my $build = $ENV{MIRRORDAV_BUILD} || MirrorDAV::Test::build();
my $snap  = "$vol/snapshots/s1";

sub proppatch {
    my ($path, $xml) = @_;
    return $srv->request('PROPPATCH', $path, { 'Content-Type' => 'application/xml' },
        qq{<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test" }
      . qq{xmlns:W="urn:schemas-microsoft-com:">$xml</D:propertyupdate>});
}
sub setprop { proppatch($_[0], "<D:set><D:prop>$_[1]</D:prop></D:set>") }
sub lockbody {
    '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
  . '</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>'
}
sub ok_status {
    my ($r, $name) = @_;
    ok($r->{status} >= 200 && $r->{status} < 300, "$name: $r->{status}")
        or diag($r->{content});
}

# Everything about the tree under DIR that a snapshot must keep.
sub record_tree {
    my ($dir) = @_;
    my %t;
    for (split /\n/, `cd '$dir' && find . -printf '%P\\t%y\\t%s\\t%m\\t%T@\\n'`) {
        my ($p, $type, $size, $mode, $mtime) = split /\t/;
        $p = '.' if $p eq '';
        $t{"stat $p"} = "$type $size $mode $mtime";
        $t{"sha1 $p"} = Digest::SHA->new(1)->addfile("$dir/$p")->hexdigest if $type eq 'f';
        next if $p =~ m{(^|/)\.mirrordav(/|$)};
        $t{"sidecar $p"} = `'$build/mirrordav' sidecar dump '$dir/$p' 2>&1`;
    }
    # Every extended attribute, of files and sidecars alike.
    $t{xattrs} = `cd '$dir' && getfattr -R -P -d -m - -e hex . 2>/dev/null`;
    return \%t;
}

# ---------------------------------------------------------------- the tree
my %files = map { ($_ => "content of $_\n" x 50) }
    qw(a.txt b.txt c.txt e.txt f.txt g.txt h.txt i.txt j.txt
       d/x.txt d/y.txt m/z.txt k/w.txt);
for my $d (qw(d m k)) { ok_status($srv->mkcol("/dav/$d"), "MKCOL $d") }
for my $f (sort keys %files) { ok_status($srv->put("/dav/$f", $files{$f}), "PUT $f") }
for my $f (qw(a.txt b.txt c.txt e.txt g.txt h.txt d/x.txt d m)) {
    ok_status(setprop("/dav/$f", "<Z:color>red</Z:color><Z:n>$f</Z:n>"), "dead properties on $f");
}
ok_status(setprop('/dav/f.txt', '<Z:color>red</Z:color>'), 'dead property on f.txt');

my $r = $srv->mkcol('/snapshots/s1');
is($r->{status}, 201, 'snapshot s1 (hardlink)') or diag($r->{content});
my $before = record_tree($snap);
ok(scalar(grep /^sidecar /, keys %$before) >= 15, 'sidecars recorded')
    or diag(join "\n", sort keys %$before);
like($before->{'sidecar a.txt'}, qr/color/, 'a dump holds the dead properties');
like($before->{xattrs}, qr/user\.mirrordav/, 'the sidecar xattr marks are recorded');
is((stat "$vol/live/e.txt")[3], 2, 'live and snapshot share e.txt (link count 2)');

# ---------------------------------------------------------------- hammer
ok_status($srv->put('/dav/a.txt', "new a\n"), 'PUT over a.txt');
ok_status($srv->put('/dav/d/x.txt', "new x\n"), 'PUT over d/x.txt');
ok_status(setprop('/dav/b.txt', '<Z:color>blue</Z:color>'), 'PROPPATCH set on b.txt');
ok_status(proppatch('/dav/c.txt', '<D:remove><D:prop><Z:color/></D:prop></D:remove>'),
          'PROPPATCH remove on c.txt');
ok_status(setprop('/dav/d', '<Z:color>green</Z:color>'), 'PROPPATCH on the folder d');
ok_status(setprop('/dav/e.txt', '<W:Win32LastModifiedTime>Thu, 19 Nov 2026 09:30:42 GMT</W:Win32LastModifiedTime>'),
          'Win32LastModifiedTime on e.txt');
ok_status(setprop('/dav/d/y.txt', '<W:Win32LastModifiedTime>Fri, 20 Nov 2026 10:00:00 GMT</W:Win32LastModifiedTime>'
                               . '<Z:color>white</Z:color>'),
          'Win32LastModifiedTime with a dead property on d/y.txt');
ok_status($srv->put('/dav/f.txt', $files{'f.txt'}, { 'X-OC-Mtime' => '1234567890' }),
          'PUT with X-OC-Mtime over f.txt (same bytes)');
ok_status($srv->request('MOVE', '/dav/g.txt', { Destination => $srv->url('/dav/g2.txt') }), 'MOVE g.txt');
ok_status($srv->request('MOVE', '/dav/m', { Destination => $srv->url('/dav/m2') }), 'MOVE folder m');
ok_status($srv->request('COPY', '/dav/h.txt', { Destination => $srv->url('/dav/h2.txt') }), 'COPY h.txt');
ok_status($srv->request('COPY', '/dav/a.txt', { Destination => $srv->url('/dav/h.txt'), Overwrite => 'T' }),
          'COPY over h.txt');
ok_status($srv->request('COPY', '/dav/d', { Destination => $srv->url('/dav/d2'), Depth => 'infinity' }),
          'COPY folder d');
ok_status($srv->delete('/dav/i.txt'), 'DELETE i.txt');
ok_status($srv->delete('/dav/k'), 'DELETE folder k');
$r = $srv->request('LOCK', '/dav/j.txt', { 'Content-Type' => 'application/xml' }, lockbody());
ok_status($r, 'LOCK of the existing j.txt');
my ($tok) = ($r->{headers}{'lock-token'} // '') =~ /<([^>]+)>/;
ok_status($srv->put('/dav/j.txt', "locked write\n", { If => "(<$tok>)" }), 'PUT to j.txt under its lock');
ok_status($srv->request('UNLOCK', '/dav/j.txt', { 'Lock-Token' => "<$tok>" }), 'UNLOCK j.txt');
$r = $srv->request('LOCK', '/dav/d/new-locked.txt', { 'Content-Type' => 'application/xml' }, lockbody());
ok_status($r, 'LOCK of a new path (creates an empty file)');
ok_status($srv->request('LOCK', '/dav/b.txt', { 'Content-Type' => 'application/xml' }, lockbody()),
          'LOCK of the shared b.txt');
ok_status(setprop('/dav/c.txt', '<W:Win32LastModifiedTime>Sun, 22 Nov 2026 12:00:00 GMT</W:Win32LastModifiedTime>'),
          'Win32LastModifiedTime on c.txt');
is((stat "$vol/live/e.txt")[9], 1795080642, 'the live e.txt has the new mtime');
is((stat "$vol/live/e.txt")[3], 1, '... in an inode of its own');
is(slurp("$vol/live/e.txt"), $files{'e.txt'}, '... with the same bytes');

# fsck --repair: a stale temporary file and every record the snapshot's
# link(2) left unbound are repaired in the live tree.
spew("$vol/live/d/.mirrordav/.put-stale", "x");
utime(1, 1, "$vol/live/d/.mirrordav/.put-stale");
my $out = `'$build/mirrordav' fsck --volume '$vol' --repair 2>&1`;
ok($? >> 8 <= 1, 'mirrordav fsck --repair ran') or diag($out);

# ---------------------------------------------------------------- compare
my $after = record_tree($snap);
my @diff = grep { ($before->{$_} // '<none>') ne ($after->{$_} // '<none>') }
           sort(keys %{{ %$before, %$after }});
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
