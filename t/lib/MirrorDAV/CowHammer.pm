package MirrorDAV::CowHammer;
# Exact copy-on-write (SPEC section 6), shared by t/64 (hardlink) and t/67
# (reflink, btrfs): a tree with dead properties, everything about a
# snapshot that must not change (record_tree), and the hammer of live
# writes through the server: PUT over files, PROPPATCH set and remove,
# Win32LastModifiedTime, X-OC-Mtime, MOVE, COPY, DELETE, LOCK on new and
# existing paths, mirrordav fsck --repair.  (ctime and link counts are
# not part of a file's content: link(2) and unlink(2) of another name
# move them.)
use strict;
use warnings;
use Exporter 'import';
use Test::More;
use Digest::SHA ();
use MirrorDAV::Test qw(slurp spew);

our @EXPORT_OK = qw(proppatch setprop lockbody ok_status record_tree
                    build_tree hammer tree_diff %FILES);

our %FILES = map { ($_ => "content of $_\n" x 50) }
    qw(a.txt b.txt c.txt e.txt f.txt g.txt h.txt i.txt j.txt
       d/x.txt d/y.txt m/z.txt k/w.txt);

sub proppatch {
    my ($srv, $path, $xml) = @_;
    return $srv->request('PROPPATCH', $path, { 'Content-Type' => 'application/xml' },
        qq{<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test" }
      . qq{xmlns:W="urn:schemas-microsoft-com:">$xml</D:propertyupdate>});
}
sub setprop { proppatch($_[0], $_[1], "<D:set><D:prop>$_[2]</D:prop></D:set>") }
sub lockbody {
    '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
  . '</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>'
}
sub ok_status {
    my ($r, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok($r->{status} >= 200 && $r->{status} < 300, "$name: $r->{status}")
        or diag($r->{content});
}

# Everything about the tree under DIR that a snapshot must keep.
sub record_tree {
    my ($build, $dir) = @_;
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

# The keys whose values differ between two records.
sub tree_diff {
    my ($before, $after) = @_;
    return grep { ($before->{$_} // '<none>') ne ($after->{$_} // '<none>') }
           sort(keys %{{ %$before, %$after }});
}

# Folders d, m, k; the files of %FILES; dead properties on most.
sub build_tree {
    my ($srv) = @_;
    for my $d (qw(d m k)) { ok_status($srv->mkcol("/dav/$d"), "MKCOL $d") }
    for my $f (sort keys %FILES) { ok_status($srv->put("/dav/$f", $FILES{$f}), "PUT $f") }
    for my $f (qw(a.txt b.txt c.txt e.txt g.txt h.txt d/x.txt d m)) {
        ok_status(setprop($srv, "/dav/$f", "<Z:color>red</Z:color><Z:n>$f</Z:n>"),
                  "dead properties on $f");
    }
    ok_status(setprop($srv, '/dav/f.txt', '<Z:color>red</Z:color>'), 'dead property on f.txt');
}

# Every kind of live write, on files the snapshot shares.
sub hammer {
    my ($srv, $build) = @_;
    my $vol = $srv->volume;
    ok_status($srv->put('/dav/a.txt', "new a\n"), 'PUT over a.txt');
    ok_status($srv->put('/dav/d/x.txt', "new x\n"), 'PUT over d/x.txt');
    ok_status(setprop($srv, '/dav/b.txt', '<Z:color>blue</Z:color>'), 'PROPPATCH set on b.txt');
    ok_status(proppatch($srv, '/dav/c.txt', '<D:remove><D:prop><Z:color/></D:prop></D:remove>'),
              'PROPPATCH remove on c.txt');
    ok_status(setprop($srv, '/dav/d', '<Z:color>green</Z:color>'), 'PROPPATCH on the folder d');
    ok_status(setprop($srv, '/dav/e.txt',
                      '<W:Win32LastModifiedTime>Thu, 19 Nov 2026 09:30:42 GMT</W:Win32LastModifiedTime>'),
              'Win32LastModifiedTime on e.txt');
    ok_status(setprop($srv, '/dav/d/y.txt',
                      '<W:Win32LastModifiedTime>Fri, 20 Nov 2026 10:00:00 GMT</W:Win32LastModifiedTime>'
                    . '<Z:color>white</Z:color>'),
              'Win32LastModifiedTime with a dead property on d/y.txt');
    ok_status($srv->put('/dav/f.txt', $FILES{'f.txt'}, { 'X-OC-Mtime' => '1234567890' }),
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
    my $r = $srv->request('LOCK', '/dav/j.txt', { 'Content-Type' => 'application/xml' }, lockbody());
    ok_status($r, 'LOCK of the existing j.txt');
    my ($tok) = ($r->{headers}{'lock-token'} // '') =~ /<([^>]+)>/;
    ok_status($srv->put('/dav/j.txt', "locked write\n", { If => "(<$tok>)" }), 'PUT to j.txt under its lock');
    ok_status($srv->request('UNLOCK', '/dav/j.txt', { 'Lock-Token' => "<$tok>" }), 'UNLOCK j.txt');
    $r = $srv->request('LOCK', '/dav/d/new-locked.txt', { 'Content-Type' => 'application/xml' }, lockbody());
    ok_status($r, 'LOCK of a new path (creates an empty file)');
    ok_status($srv->request('LOCK', '/dav/b.txt', { 'Content-Type' => 'application/xml' }, lockbody()),
              'LOCK of the shared b.txt');
    ok_status(setprop($srv, '/dav/c.txt',
                      '<W:Win32LastModifiedTime>Sun, 22 Nov 2026 12:00:00 GMT</W:Win32LastModifiedTime>'),
              'Win32LastModifiedTime on c.txt');
    is((stat "$vol/live/e.txt")[9], 1795080642, 'the live e.txt has the new mtime');
    is(slurp("$vol/live/e.txt"), $FILES{'e.txt'}, '... with the same bytes');

    # fsck --repair: a stale temporary file and every record the
    # snapshot left unbound are repaired in the live tree.
    spew("$vol/live/d/.mirrordav/.put-stale", "x");
    utime(1, 1, "$vol/live/d/.mirrordav/.put-stale");
    my $out = `'$build/mirrordav' fsck --volume '$vol' --repair 2>&1`;
    ok($? >> 8 <= 1, 'mirrordav fsck --repair ran') or diag($out);
}

1;
