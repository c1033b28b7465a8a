#!/usr/bin/env perl
# Sidecar metadata end to end: size on disk, long names, Win32 mtime,
# SHA-1 on receipt, and that sidecars follow COPY, MOVE and DELETE.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MirrorDAV::Test qw(sha1_file);

my $s    = MirrorDAV::Test->start_server;
my $live = $s->live;

sub proppatch {
    my ($path, $props) = @_;
    my $body = qq{<?xml version="1.0" encoding="utf-8"?>\n}
      . qq{<D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://example.com/ns" }
      . qq{xmlns:W="urn:schemas-microsoft-com:"><D:set><D:prop>$props</D:prop></D:set></D:propertyupdate>};
    return $s->request('PROPPATCH', $path, { 'Content-Type' => 'application/xml' }, $body);
}

sub prop_sha1 {
    my ($path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>});
    return $r->{content} =~ m{<lp\d+:sha1>([0-9a-f]{40})</lp\d+:sha1>} ? $1 : undef;
}

sub sidecars_in {
    my ($dir) = @_;
    opendir my $d, "$dir/.mirrordav" or return ();
    return sort grep { /\.h?db$/ } readdir $d;
}

# --- SHA-1 on receipt
{
    my $data = join '', map { chr(($_ * 7) % 256) } 1 .. 100_000;
    is $s->put('/dav/data.bin', $data)->{status}, 201, 'PUT data.bin';
    is prop_sha1('/dav/data.bin'), sha1_file("$live/data.bin"),
        'the SHA-1 live property equals sha1sum of the stored bytes';
    my $r = proppatch('/dav/data.bin', '<M:sha1 xmlns:M="http://mirrordav.org/ns">0000000000000000000000000000000000000000</M:sha1>');
    like $r->{content}, qr{HTTP/1.1 (403|409)}, 'the SHA-1 property is protected (mod_dav answers 409)';
    is prop_sha1('/dav/data.bin'), sha1_file("$live/data.bin"), '... and unchanged';
}

# --- size: 12 properties, under 2 KiB of values, one 4 KiB block
{
    is $s->put('/dav/small.txt', "x")->{status}, 201, 'PUT small.txt';
    my $props = join '', map { sprintf '<Z:prop%02d>%s</Z:prop%02d>', $_, ('v' x 160), $_ } 1 .. 12;
    my $r = proppatch('/dav/small.txt', $props);
    is $r->{status}, 207, 'PROPPATCH of 12 properties';
    unlike $r->{content}, qr{HTTP/1.1 [45]\d\d}, 'all 12 stored';
    my $db = "$live/.mirrordav/small.txt.db";
    my $blocks = (stat $db)[12];
    ok defined $blocks && $blocks * 512 <= 4096, "sidecar occupies at most 4 KiB (du: " . ($blocks // 0) * 512 . " bytes)";
    $r = $s->propfind('/dav/small.txt', 0);
    my $n = () = $r->{content} =~ /<ns\d+:prop\d\d[ >]/g;
    is $n, 12, 'PROPFIND allprop returns the 12 properties';
}

# --- dead properties exactly as given: namespaces, xml:lang, mixed content
{
    my $r = proppatch('/dav/small.txt',
        '<Z:note xml:lang="fr">un <Z:b xmlns:Q="urn:q">gras</Z:b> mot</Z:note><Q:other xmlns:Q="urn:other">v</Q:other>');
    unlike $r->{content}, qr{HTTP/1.1 [45]\d\d}, 'PROPPATCH with mixed content';
    $r = $s->propfind('/dav/small.txt', 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="http://example.com/ns" xmlns:Q="urn:other"><D:prop><Z:note/><Q:other/></D:prop></D:propfind>});
    like $r->{content}, qr{<(\w+):note xml:lang="fr"[^>]*xmlns:\1="http://example.com/ns"|<(\w+):note[^>]*xml:lang="fr"}, 'xml:lang kept';
    like $r->{content}, qr{>un <(\w+):b>gras</\1:b> mot</}, 'mixed content kept';
    like $r->{content}, qr{<(\w+):other[^>]*xmlns:\1="urn:other"[^>]*>v</\1:other>}, 'second namespace kept';
}

# --- all-or-nothing PROPPATCH: one protected property fails the lot
{
    my $r = proppatch('/dav/small.txt',
        '<Z:shouldnotstick>1</Z:shouldnotstick><D:getetag>x</D:getetag>');
    like $r->{content}, qr{HTTP/1.1 424}, 'the other property is reported as failed dependency';
    $r = $s->propfind('/dav/small.txt', 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="http://example.com/ns"><D:prop><Z:shouldnotstick/></D:prop></D:propfind>});
    like $r->{content}, qr{404 Not Found}, '... and was not stored';
}

# --- Win32LastModifiedTime sets the mtime as well as storing the property
{
    is $s->put('/dav/win.txt', "w")->{status}, 201, 'PUT win.txt';
    my $r = proppatch('/dav/win.txt', '<W:Win32LastModifiedTime>Wed, 01 Jan 2020 10:20:30 GMT</W:Win32LastModifiedTime>');
    unlike $r->{content}, qr{HTTP/1.1 [45]\d\d}, 'PROPPATCH Win32LastModifiedTime';
    is( (stat "$live/win.txt")[9], 1577874030, 'the file mtime is the one sent');
    # Setting the mtime moves the ctime too; the record is re-bound, as
    # the bytes are the same.
    is prop_sha1('/dav/win.txt'), sha1_file("$live/win.txt"), 'the SHA-1 is still served after the mtime changed';
    $r = proppatch('/dav/win.txt', '<W:Win32LastModifiedTime>not a date</W:Win32LastModifiedTime>');
    like $r->{content}, qr{HTTP/1.1 400}, 'an invalid date is refused';
    is( (stat "$live/win.txt")[9], 1577874030, '... and the mtime is unchanged');
    is prop_sha1('/dav/win.txt'), sha1_file("$live/win.txt"), '... and the SHA-1 still served';
}

# --- a 255-byte name: hashed sidecar, every method works, nothing left over
{
    my $name = ('n' x 251) . '.txt';
    is length($name), 255, 'name is 255 bytes';
    $s->mkcol('/dav/long');
    is $s->put("/dav/long/$name", "long\n")->{status}, 201, 'PUT 255-byte name';
    my @sc = sidecars_in("$live/long");
    is scalar(@sc), 1, 'one sidecar';
    like $sc[0] // '', qr/^[0-9a-f]{40}\.hdb$/, 'with a hashed name';
    my $r = proppatch("/dav/long/$name", '<Z:k>v</Z:k>');
    unlike $r->{content}, qr{HTTP/1.1 [45]\d\d}, 'PROPPATCH works';
    $r = $s->propfind("/dav/long/$name", 0);
    like $r->{content}, qr{<(\w+):k[^>]*>v</\1:k>}, 'PROPFIND returns the property';
    is prop_sha1("/dav/long/$name"), sha1_file("$live/long/$name"), 'SHA-1 recorded';

    my $copy = ('c' x 251) . '.txt';
    $r = $s->request('COPY', "/dav/long/$name", { Destination => $s->url("/dav/long/$copy") });
    is $r->{status}, 201, 'COPY to another 255-byte name';
    $r = $s->propfind("/dav/long/$copy", 0);
    like $r->{content}, qr{<(\w+):k[^>]*>v</\1:k>}, 'the copy has the property';

    my $moved = ('m' x 200) . '.txt';
    $r = $s->request('MOVE', "/dav/long/$copy", { Destination => $s->url("/dav/long/$moved") });
    is $r->{status}, 201, 'MOVE to a short name';
    $r = $s->propfind("/dav/long/$moved", 0);
    like $r->{content}, qr{<(\w+):k[^>]*>v</\1:k>}, 'the moved file has the property';
    is prop_sha1("/dav/long/$moved"), sha1_file("$live/long/$moved"), 'and its SHA-1';

    is $s->delete("/dav/long/$name")->{status}, 204, 'DELETE 255-byte name';
    is $s->delete("/dav/long/$moved")->{status}, 204, 'DELETE moved';
    is_deeply [sidecars_in("$live/long")], [], 'no sidecar left behind';
}

# --- sidecars follow a depth-infinity COPY, MOVE and DELETE of a tree
{
    $s->mkcol('/dav/tree');
    $s->mkcol('/dav/tree/sub');
    $s->put('/dav/tree/sub/f.txt', 'f');
    proppatch('/dav/tree/sub/f.txt', '<Z:tag>deep</Z:tag>');
    proppatch('/dav/tree/sub', '<Z:tag>dir</Z:tag>');
    my $r = $s->request('COPY', '/dav/tree', { Destination => $s->url('/dav/tree2'), Depth => 'infinity' });
    is $r->{status}, 201, 'COPY tree';
    $r = $s->request('MOVE', '/dav/tree2', { Destination => $s->url('/dav/tree3') });
    is $r->{status}, 201, 'MOVE tree';
    for my $p ('/dav/tree3/sub/f.txt', '/dav/tree3/sub') {
        $r = $s->propfind($p, 0);
        like $r->{content}, qr{<(\w+):tag[^>]*>(deep|dir)</\1:tag>}, "property of $p followed";
    }
    is prop_sha1('/dav/tree3/sub/f.txt'), sha1_file("$live/tree3/sub/f.txt"), 'SHA-1 followed';
    is $s->delete('/dav/tree3')->{status}, 204, 'DELETE tree';
    ok !-e "$live/.mirrordav/tree3.db" && !-e "$live/.mirrordav/tree2.db", 'no sidecar left for the deleted tree';
    my $fsck = `$ENV{MIRRORDAV_BUILD}/mirrordav fsck --volume ${\$s->volume} 2>&1`;
    is $? >> 8, 0, 'fsck finds the volume clean' or diag $fsck;
}

done_testing;
