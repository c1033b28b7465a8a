#!/usr/bin/env perl
# COPY, MOVE and DELETE of trees (RFC 4918, SPEC sections 2 and 3): contents,
# dead properties and file mtimes follow; Overwrite and missing parents give
# 412 and 409; a member that cannot be removed or written is reported in a
# 207 Multi-Status that names exactly it, while the rest is done.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Find ();
use Digest::SHA ();
use MirrorDAV::Test qw(slurp spew);

my $srv  = MirrorDAV::Test->start_server;
my $live = $srv->live;
my $dav  = $srv->url('/dav');
my @immutable;   # paths made immutable, undone whatever happens
END { system('chattr', '-i', $_) for grep { -e } @immutable }

sub dest { my ($p) = @_; return "$dav$p" =~ s{/dav/dav}{/dav}r }
sub copy { my ($s, $d, %h) = @_; $srv->request('COPY', $s, { Destination => dest($d), %h }) }
sub move { my ($s, $d, %h) = @_; $srv->request('MOVE', $s, { Destination => dest($d), %h }) }

sub proppatch {
    my ($path, $name, $value) = @_;
    return $srv->request('PROPPATCH', $path, { 'Content-Type' => 'application/xml' },
        qq{<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x-mirrordav-test:">}
      . qq{<D:set><D:prop><Z:$name>$value</Z:$name></D:prop></D:set></D:propertyupdate>});
}
# The value of dead property Z:NAME of PATH, or undef; and the status.
sub dead_prop {
    my ($path, $name) = @_;
    my $r = $srv->propfind($path, 0,
        qq{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:x-mirrordav-test:">}
      . qq{<D:prop><Z:$name/></D:prop></D:propfind>});
    return (undef, $r->{status}) unless $r->{status} == 207;
    # the property in a 200 propstat
    for my $ps ($r->{content} =~ m{<D:propstat>(.*?)</D:propstat>}gs) {
        next unless $ps =~ m{<D:status>HTTP/1\.1 200};
        return ($1, 207) if $ps =~ m{<(?:\w+:)?$name\b[^>]*>(.*?)</(?:\w+:)?$name>}s;
    }
    return (undef, 207);
}

# path (relative to DIR) -> 'd' or 'f:sha1:mtime', sidecar folders skipped.
sub tree {
    my ($dir, $with_mtime) = @_;
    my %t;
    return \%t unless -d $dir;
    File::Find::find({ no_chdir => 1, wanted => sub {
        if (m{/\.mirrordav$}) { $File::Find::prune = 1; return }
        return if $_ eq $dir;
        (my $rel = $_) =~ s{^\Q$dir\E/}{};
        $t{$rel} = -d $_ ? 'd' : join ':', 'f', Digest::SHA->new(1)->addfile($_, 'b')->hexdigest,
                                            $with_mtime ? (stat $_)[9] : ();
    } }, $dir);
    return \%t;
}

# hrefs in a Multi-Status body, with their status lines (and, in list
# context, their descriptions).
sub ms_responses {
    my ($body) = @_;
    my (%h, %d);
    for my $resp ($body =~ m{<D:response\b[^>]*>(.*?)</D:response>}gs) {
        my ($href) = $resp =~ m{<D:href>(.*?)</D:href>}s or next;
        my ($st) = $resp =~ m{<D:status>(.*?)</D:status>}s;
        my ($desc) = $resp =~ m{<D:responsedescription>(.*?)</D:responsedescription>}s;
        $h{$href} = $st // '';
        $d{$href} = $desc // '';
    }
    return wantarray ? (\%h, \%d) : \%h;
}

# ------------------------------------------------------------ a tree
my %files = (
    'tree/top.txt'              => "top\n",
    'tree/empty.txt'            => '',
    'tree/a/one.bin'            => join('', map { chr(($_ * 7) % 256) } 0 .. 100_000),
    'tree/a/b/two.txt'          => "two\n" x 1000,
    'tree/a/b/c/three.txt'      => "three\n",
    'tree/a/b/c/with space é.txt' => "unicode\n",
    'tree/d/four.txt'           => "four\n",
);
for my $c ('tree', 'tree/a', 'tree/a/b', 'tree/a/b/c', 'tree/d', 'tree/emptydir') {
    is($srv->mkcol("/dav/$c")->{status}, 201, "MKCOL $c");
}
my $mt = 1_300_000_000;
for my $f (sort keys %files) {
    (my $u = $f) =~ s/ /%20/g;
    my $r = $srv->put("/dav/$u", $files{$f}, { 'X-OC-Mtime' => $mt++ });
    is($r->{status}, 201, "PUT $f");
}
is(proppatch('/dav/tree/a/one.bin', 'color', 'blue-green')->{status}, 207, 'PROPPATCH a file');
is(proppatch('/dav/tree/a/b', 'shape', 'round')->{status}, 207, 'PROPPATCH a collection');
is(proppatch('/dav/tree/a/b/c/three.txt', 'size', 'three')->{status}, 207, 'PROPPATCH a deep file');
is((dead_prop('/dav/tree/a/one.bin', 'color'))[0], 'blue-green', 'the property reads back');
my $src_tree = tree("$live/tree", 1);

# A value with markup characters comes back as well-formed XML with the same
# text, on the file and on its copy.
sub well_formed {
    my ($xml) = @_;
    open my $py, '|-', q{python3 -c 'import sys, xml.dom.minidom; }
                     . q{xml.dom.minidom.parseString(sys.stdin.buffer.read())' 2>/dev/null}
        or die;
    print $py $xml;
    return close $py;
}
sub xml_text {
    my ($v) = @_;
    return undef unless defined $v;
    $v =~ s/<!\[CDATA\[(.*?)\]\]>/$1 =~ s{&}{&amp;}gr =~ s{<}{&lt;}gr/gse;
    $v =~ s/&lt;/</g; $v =~ s/&gt;/>/g; $v =~ s/&quot;/"/g; $v =~ s/&apos;/'/g;
    $v =~ s/&#(\d+);/chr $1/ge; $v =~ s/&#x([0-9a-f]+);/chr hex $1/gie; $v =~ s/&amp;/&/g;
    return $v;
}
is(proppatch('/dav/tree/top.txt', 'markup', 'a &amp; b &lt;c&gt;')->{status}, 207,
   'PROPPATCH a value with & and <');
is(copy('/dav/tree/top.txt', '/dav/top-copy.txt')->{status}, 201, 'COPY it');
for my $p ('/dav/tree/top.txt', '/dav/top-copy.txt') {
    my $xml = $srv->propfind($p, 0)->{content};
    ok(well_formed($xml), "PROPFIND $p is well-formed XML")
        or diag(join "\n", grep { /markup/ } split /\n/, $xml);
    is(xml_text((dead_prop($p, 'markup'))[0]), 'a & b <c>', "... and the value reads back as given");
}
$srv->delete('/dav/top-copy.txt');
$srv->request('PROPPATCH', '/dav/tree/top.txt', { 'Content-Type' => 'application/xml' },
    '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x-mirrordav-test:">'
  . '<D:remove><D:prop><Z:markup/></D:prop></D:remove></D:propertyupdate>');
is(scalar(grep { !/^d$/ } values %$src_tree), scalar(keys %files), 'the source tree is on disk');

sub props_follow {
    my ($root, $what) = @_;
    is((dead_prop("$root/a/one.bin", 'color'))[0], 'blue-green', "$what: a file's property followed");
    is((dead_prop("$root/a/b", 'shape'))[0], 'round', "$what: a collection's property followed");
    is((dead_prop("$root/a/b/c/three.txt", 'size'))[0], 'three', "$what: a deep file's property followed");
    is((dead_prop("$root/top.txt", 'color'))[0], undef, "$what: no property appeared where none was");
}

# ------------------------------------------------------------ COPY
my $r = copy('/dav/tree', '/dav/copy', Depth => 'infinity');
is($r->{status}, 201, 'COPY Depth infinity -> 201') or diag($r->{content});
is_deeply(tree("$live/copy", 1), $src_tree, 'the copy has the same members, bytes and file mtimes');
is_deeply(tree("$live/tree", 1), $src_tree, 'the source is unchanged');
props_follow('/dav/copy', 'COPY');
props_follow('/dav/tree', 'COPY source');
# The copy's properties are its own.
is(proppatch('/dav/copy/a/one.bin', 'color', 'red')->{status}, 207, 'PROPPATCH the copy');
is((dead_prop('/dav/tree/a/one.bin', 'color'))[0], 'blue-green', 'the source property is unchanged');

$r = copy('/dav/tree/a/one.bin', '/dav/one-copy.bin');
is($r->{status}, 201, 'COPY of a file -> 201');
is(slurp("$live/one-copy.bin"), $files{'tree/a/one.bin'}, 'the copied file has the same bytes');
is((stat "$live/one-copy.bin")[9], (stat "$live/tree/a/one.bin")[9], 'COPY preserves the file mtime');
is((dead_prop('/dav/one-copy.bin', 'color'))[0], 'blue-green', 'its property followed');

$r = copy('/dav/tree', '/dav/shallow', Depth => '0');
is($r->{status}, 201, 'COPY Depth 0 of a collection -> 201');
is_deeply(tree("$live/shallow"), {}, 'Depth 0 copies the collection without members');

# ------------------------------------------------------------ MOVE
my $copy_tree = tree("$live/copy", 1);
$r = move('/dav/copy', '/dav/moved');
is($r->{status}, 201, 'MOVE of a tree -> 201') or diag($r->{content});
ok(!-e "$live/copy", 'the source is gone from disk');
is($srv->propfind('/dav/copy', 0)->{status}, 404, 'PROPFIND of the source -> 404');
is_deeply(tree("$live/moved", 1), $copy_tree, 'the moved tree has the same members, bytes and mtimes');
is((dead_prop('/dav/moved/a/one.bin', 'color'))[0], 'red', "MOVE: a file's property followed");
is((dead_prop('/dav/moved/a/b', 'shape'))[0], 'round', "MOVE: a collection's property followed");
is((dead_prop('/dav/moved/a/b/c/three.txt', 'size'))[0], 'three', "MOVE: a deep file's property followed");
is_deeply([glob("$live/.mirrordav/copy*")], [], 'no sidecar is left under the old name');

$r = move('/dav/one-copy.bin', '/dav/moved/one-moved.bin');
is($r->{status}, 201, 'MOVE of a file -> 201');
is((dead_prop('/dav/moved/one-moved.bin', 'color'))[0], 'blue-green', 'its property followed');
is((stat "$live/moved/one-moved.bin")[9], (stat "$live/tree/a/one.bin")[9], 'MOVE preserves the mtime');

# ------------------------------------------------------------ DELETE
$r = $srv->delete('/dav/moved');
is($r->{status}, 204, 'DELETE of a tree -> 204');
ok(!-e "$live/moved", 'the tree is gone from disk');
is($srv->propfind('/dav/moved/a/one.bin', 0)->{status}, 404, 'PROPFIND of a member -> 404');
is_deeply([glob("$live/.mirrordav/moved*")], [], 'its sidecar is gone');
# Re-created at the same path, the resources have no properties.
for my $c ('moved', 'moved/a', 'moved/a/b') { $srv->mkcol("/dav/$c") }
$srv->put('/dav/moved/a/one.bin', 'new');
is((dead_prop('/dav/moved/a/one.bin', 'color'))[0], undef, 'a new file at the path has no old property');
is((dead_prop('/dav/moved/a/b', 'shape'))[0], undef, 'a new collection at the path has no old property');

# ------------------------------------------------------------ Overwrite, 409
$srv->put('/dav/existing.txt', "existing\n");
$srv->put('/dav/src.txt', "source\n");
for my $m (['COPY', \&copy], ['MOVE', \&move]) {
    my ($name, $fn) = @$m;
    $r = $fn->('/dav/src.txt', '/dav/existing.txt', Overwrite => 'F');
    is($r->{status}, 412, "$name Overwrite: F onto an existing file -> 412");
    is(slurp("$live/existing.txt"), "existing\n", '... the destination is unchanged');
    is(slurp("$live/src.txt"), "source\n", '... the source is unchanged');
    $r = $fn->('/dav/tree/a', '/dav/tree/d', Overwrite => 'F');
    is($r->{status}, 412, "$name Overwrite: F onto an existing collection -> 412");
    ok(-f "$live/tree/d/four.txt" && -f "$live/tree/a/one.bin", '... both trees unchanged');
    $r = $fn->('/dav/src.txt', '/dav/nodir/src.txt');
    is($r->{status}, 409, "$name to a missing parent -> 409");
    ok(!-e "$live/nodir", '... nothing created');
    $r = $fn->('/dav/tree', '/dav/no/such/tree');
    is($r->{status}, 409, "$name of a tree to a missing parent -> 409");
    ok(!-e "$live/no", '... nothing created');
    is_deeply(tree("$live/tree", 1), $src_tree, '... the source tree is unchanged');
    $r = $fn->('/dav/src.txt', '/dav/src.txt');
    is($r->{status}, 403, "$name onto itself -> 403");
    is(slurp("$live/src.txt"), "source\n", '... the file is unchanged');
}
$r = copy('/dav/src.txt', '/dav/existing.txt', Overwrite => 'T');
is($r->{status}, 204, 'COPY Overwrite: T onto an existing file -> 204');
is(slurp("$live/existing.txt"), "source\n", '... the destination is replaced');
$r = move('/dav/tree/a', '/dav/tree/a/b/inside');
is($r->{status}, 403, 'MOVE of a collection into itself -> 403') or diag($r->{content});
ok(-f "$live/tree/a/one.bin", '... the tree is unchanged');

# ------------------------------------------------------------ partial failures
# A member that cannot be removed: an immutable subfolder, or failing that,
# a root-owned read-only one.
sub lock_dir {
    my ($dir) = @_;
    if (system("chattr +i '$dir' 2>/dev/null") == 0) {
        push @immutable, $dir;
        return 'chattr +i';
    }
    chown 0, 0, $dir;
    chmod 0555, $dir;
    return 'root-owned 0555';
}
sub unlock_dir {
    my ($dir) = @_;
    system('chattr', '-i', $dir);
    @immutable = grep { $_ ne $dir } @immutable;
    my ($uid, $gid) = (getpwnam('www-data'))[2, 3];
    chown $uid, $gid, $dir;
    chmod 0755, $dir;
}
if ($< != 0) {
    note('the partial-failure cases need root to make a member undeletable');
    done_testing;
    exit 0;
}

for my $c ('del', 'del/a', 'del/a/locked', 'del/a/free', 'del/b') {
    $srv->mkcol("/dav/$c");
}
$srv->put("/dav/$_", "x $_\n") for 'del/top.txt', 'del/a/one.txt', 'del/a/locked/in1.txt',
                                 'del/a/locked/in2.txt', 'del/a/free/f.txt', 'del/b/b.txt';
is(proppatch('/dav/del/a/locked/in1.txt', 'color', 'kept')->{status}, 207, 'PROPPATCH a member to be kept');
my $how = lock_dir("$live/del/a/locked");
note("made del/a/locked undeletable with $how");

$r = $srv->delete('/dav/del');
is($r->{status}, 207, 'DELETE with undeletable members -> 207 Multi-Status') or diag($r->{content});
my ($ms, $descs) = ms_responses($r->{content});
is_deeply([sort keys %$ms], ['/dav/del/a/locked/in1.txt', '/dav/del/a/locked/in2.txt'],
          'the Multi-Status names exactly the members that could not be removed')
    or diag($r->{content});
like($_, qr{HTTP/1\.1 403 }, 'with status 403') for values %$ms;
like($_, qr{^Could not delete the file: (Operation not permitted|Permission denied)$},
     '... and a description of the cause') for values %$descs;
ok(-f "$live/del/a/locked/in1.txt" && -f "$live/del/a/locked/in2.txt", 'the failing members are still there');
is_deeply([sort keys %{ tree("$live/del") }], ['a', 'a/locked', 'a/locked/in1.txt', 'a/locked/in2.txt'],
          'everything else was removed');
is((dead_prop('/dav/del/a/locked/in1.txt', 'color'))[0], 'kept', 'the kept member keeps its property');
unlock_dir("$live/del/a/locked");

# COPY with Overwrite onto a destination one member of which cannot be
# deleted.  mod_dav deletes the destination before copying; the provider
# instead exchanges the staged copy with it, so the copy completes, and the
# member that could not be removed stays in the staging folder (its intent
# record in state/ says it is disposable; fsck reports it, --repair
# removes it once it can) rather than mixing old and new data.
my $admin  = "$ENV{MIRRORDAV_BUILD}/mirrordav";
my $volume = $srv->volume;
for my $c ('csrc', 'csrc/x', 'cdst', 'cdst/x') { $srv->mkcol("/dav/$c") }
$srv->put("/dav/$_", "new $_\n") for 'csrc/1.txt', 'csrc/x/2.txt', 'csrc/x/3.txt';
$srv->put("/dav/$_", "old $_\n") for 'cdst/1.txt', 'cdst/x/2.txt';
$how = lock_dir("$live/cdst/x");
$r = copy('/dav/csrc', '/dav/cdst', Overwrite => 'T', Depth => 'infinity');
is($r->{status}, 204, "COPY over a destination with an undeletable member ($how) -> 204") or diag($r->{content});
is(slurp("$live/cdst/1.txt"), "new csrc/1.txt\n", 'the destination is the copy');
is(slurp("$live/cdst/x/2.txt"), "new csrc/x/2.txt\n", '... in every member');
is(slurp("$live/cdst/x/3.txt"), "new csrc/x/3.txt\n", '... new members included');
my @stage = glob("$live/.mirrordav/.stage-*");
is(scalar @stage, 1, 'the undeletable old member was left in a staging folder');
is(slurp("$stage[0]/cdst/x/2.txt") // '', "old cdst/x/2.txt\n", '... intact');
$r = $srv->propfind('/dav/', 1);
unlike($r->{content}, qr/stage/, 'and is not visible over WebDAV');
my $report = `$admin fsck --repair --volume $volume 2>&1`;
isnt($? >> 8, 0, 'fsck --repair cannot finish it while the member is undeletable');
like($report, qr{state/intent-\w+\tinterrupted-copy\tkept \(complete .*cdst}, '... and reports the intent') or diag($report);
ok(-f "$stage[0]/cdst/x/2.txt", '... which it keeps');
if (@stage) {
    push @immutable, "$stage[0]/cdst/x" if $how eq 'chattr +i';
    unlock_dir("$stage[0]/cdst/x");
}
$report = `$admin fsck --repair --volume $volume 2>&1`;
is($? >> 8, 0, 'once it can be deleted, fsck --repair removes it') or diag($report);
is(scalar(() = glob("$live/.mirrordav/.stage-*")), 0, '... the staging folder is gone');
is(scalar(() = glob("$volume/state/intent-*")), 0, '... and so is its record');

# COPY with Overwrite that fails: a source member the server cannot read.
# Replacing is all or nothing: the old destination comes back whole.
for my $c ('rsrc', 'rdst') { $srv->mkcol("/dav/$c") }
$srv->put("/dav/$_", "new $_\n") for 'rsrc/1.txt', 'rsrc/2.txt';
$srv->put("/dav/$_", "old $_\n") for 'rdst/1.txt', 'rdst/9.txt';
chown 0, 0, "$live/rsrc/2.txt";
chmod 0600, "$live/rsrc/2.txt";
$r = copy('/dav/rsrc', '/dav/rdst', Overwrite => 'T', Depth => 'infinity');
is($r->{status}, 403, 'COPY that fails midway -> the failing member\'s status') or diag($r->{content});
like($r->{content}, qr{rsrc/2\.txt|rdst/2\.txt}, '... naming the member');
like($r->{content}, qr/left as it was/, '... saying the destination is unchanged');
is(slurp("$live/rdst/1.txt"), "old rdst/1.txt\n", 'the old destination is back');
is(slurp("$live/rdst/9.txt"), "old rdst/9.txt\n", '... whole');
ok(!-e "$live/rdst/2.txt", '... with nothing of the failed copy');
is(scalar(() = glob("$live/.mirrordav/.stage-*")), 0, 'and no staging folder left behind');

# A MOVE over an existing destination sets it aside and drops it.
$srv->mkcol('/dav/msrc');
$srv->put('/dav/msrc/a.txt', "moved\n");
$srv->mkcol('/dav/mdst');
$srv->put('/dav/mdst/b.txt', "replaced\n");
$r = move('/dav/msrc', '/dav/mdst', Overwrite => 'T');
is($r->{status}, 204, 'MOVE over an existing collection -> 204');
ok(-f "$live/mdst/a.txt" && !-e "$live/mdst/b.txt", 'the destination is the moved tree');
is(scalar(() = glob("$live/.mirrordav/.stage-*")), 0, 'no staging folder left behind');
is(scalar(() = glob("$volume/state/intent-*")), 0, 'no intent record left behind');

# ------------------------------------------------------------ error reports
# The report of a failing member is the member's own, whole: a COPY that
# fails on one file among many siblings (copied after it, in per-member
# pools) names that file and its cause.
$srv->mkcol('/dav/usrc');
$srv->put(sprintf('/dav/usrc/f%02d.txt', $_), "f$_\n" x 50) for 0 .. 39;
chown 0, 0, "$live/usrc/f13.txt";
chmod 0600, "$live/usrc/f13.txt";
$r = copy('/dav/usrc', '/dav/udst', Depth => 'infinity');
is($r->{status}, 403, 'COPY with one unreadable member among 40 -> 403') or diag($r->{content});
like($r->{content}, qr{Could not copy /dav/udst/f13\.txt: Could not copy the file: Permission denied Nothing was copied\.},
     '... naming that member and its cause exactly') or diag($r->{content});
ok(!-e "$live/udst", '... and nothing was copied');

# A member whose sidecar cannot be removed is not deleted without it: it is
# reported, and keeps its data and its properties; no later file of that
# name inherits them.
for my $c ('sdel', 'sdel/in') { $srv->mkcol("/dav/$c") }
$srv->put("/dav/sdel/$_", "x\n") for 'in/keep.txt', 'in/go.txt', 'top.txt';
is(proppatch('/dav/sdel/in/keep.txt', 'color', 'stays')->{status}, 207, 'PROPPATCH a member');
my $db = "$live/sdel/in/.mirrordav/keep.txt.db";
ok(-f $db, 'its sidecar is there');
SKIP: {
    skip 'chattr +i is not available here', 9 unless system("chattr +i '$db' 2>/dev/null") == 0;
    push @immutable, $db;
    $r = $srv->delete('/dav/sdel');
    is($r->{status}, 207, 'DELETE of a tree with an undeletable sidecar -> 207') or diag($r->{content});
    my ($ms2, $d2) = ms_responses($r->{content});
    is_deeply([keys %$ms2], ['/dav/sdel/in/keep.txt'], '... naming exactly that member');
    like($ms2->{'/dav/sdel/in/keep.txt'} // '', qr{HTTP/1\.1 403 }, '... with status 403');
    like($d2->{'/dav/sdel/in/keep.txt'} // '', qr{^Could not delete the metadata; the entry was kept: Operation not permitted$},
         '... and the cause');
    ok(-f "$live/sdel/in/keep.txt", 'the member is still there');
    is((dead_prop('/dav/sdel/in/keep.txt', 'color'))[0], 'stays', '... with its property');
    ok(!-e "$live/sdel/in/go.txt" && !-e "$live/sdel/top.txt", 'the rest is deleted');
    system('chattr', '-i', $db);
    @immutable = grep { $_ ne $db } @immutable;
    is($srv->delete('/dav/sdel/in/keep.txt')->{status}, 204, 'once it can be, the member is deleted');
    $srv->put('/dav/sdel/in/keep.txt', "new\n");
    is((dead_prop('/dav/sdel/in/keep.txt', 'color'))[0], undef, 'and a new file of that name has no old property');
}

done_testing;
