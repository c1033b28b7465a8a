#!/usr/bin/env perl
# A full disk (SPEC section 10): every write is refused with 507 and a
# cause, nothing partial becomes visible, what was stored stays as it was,
# and everything works again once space is freed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);
use MirrorDAV::Test qw(slurp spew);

plan skip_all => 'needs root to mount a small tmpfs' if $> != 0;
my $mnt = tempdir('full-disk-XXXXXX', TMPDIR => 1, CLEANUP => 0);
plan skip_all => 'cannot mount tmpfs here'
    if system("mount -t tmpfs -o size=8m tmpfs '$mnt' 2>/dev/null") != 0;
chmod 0755, $mnt;

my $s    = MirrorDAV::Test->start_server(volume => "$mnt/volume");
my $live = $s->live;
my $tmp  = tempdir('full-disk-data-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub proppatch {
    my ($path, $value) = @_;
    return $s->request('PROPPATCH', $path, { 'Content-Type' => 'application/xml' },
        qq{<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:note>$value</Z:note></D:prop></D:set></D:propertyupdate>});
}
sub note_of {
    my ($path) = @_;
    my $r = $s->propfind($path, 0);
    return $r->{content} =~ m{<(\w+):note[^>]*>([^<]*)</\1:note>} ? $2 : undef;
}

is $s->put('/dav/keep.txt', "keep me\n")->{status}, 201, 'PUT a file';
$s->mkcol('/dav/dir');
is $s->put('/dav/dir/a.txt', "a\n")->{status}, 201, 'and one in a folder';
like proppatch('/dav/keep.txt', 'old')->{content}, qr{200 OK}, 'and a property';

# Fill the volume to the last block, as the server's user.
my ($uid, $gid) = (getpwnam('www-data'))[2, 3];
system("dd if=/dev/zero of='$mnt/volume/filler' bs=64k 2>/dev/null");
chown $uid, $gid, "$mnt/volume/filler";
my $free = (split ' ', `df --output=avail -B1 '$mnt' | tail -1`)[0];
cmp_ok $free, '<', 64 * 1024, "the volume is full ($free bytes free)";

spew("$tmp/big", 'x' x (1 << 20));
my $r = $s->put('/dav/new.bin', slurp("$tmp/big"));
is $r->{status}, 507, 'PUT of a new file: 507';
like $r->{content}, qr/space|storage/i, '... naming the cause';
ok !-e "$live/new.bin", '... and it does not exist';
$r = $s->put('/dav/keep.txt', slurp("$tmp/big"));
is $r->{status}, 507, 'PUT over an existing file: 507';
is slurp("$live/keep.txt"), "keep me\n", '... and the old version is intact';

$r = proppatch('/dav/keep.txt', 'new ' . ('y' x 8000));
ok $r->{status} == 507 || $r->{content} =~ m{HTTP/1.1 507}, 'PROPPATCH: 507'
    or diag $r->{content};
is note_of('/dav/keep.txt'), 'old', '... and the old property is intact';

$r = $s->request('COPY', '/dav/dir', { Destination => $s->url('/dav/dir2'), Depth => 'infinity' });
is $r->{status}, 507, 'COPY of a folder: 507' or diag $r->{content};
like $r->{content}, qr/Nothing was copied/, '... all or nothing';
ok !-e "$live/dir2", '... and no half-copied folder is visible';

my @temps = glob("$live/.mirrordav/.put-* $live/.mirrordav/.tmp-* $live/dir/.mirrordav/.tmp-*");
is scalar(@temps), 0, 'no temp file is left anywhere' or diag "@temps";

# Space again: everything works.
unlink "$mnt/volume/filler";
is $s->put('/dav/new.bin', slurp("$tmp/big"))->{status}, 201, 'after freeing space, PUT works';
like proppatch('/dav/keep.txt', 'again')->{content}, qr{200 OK}, 'and PROPPATCH';
is note_of('/dav/keep.txt'), 'again', '... which is stored';
my $fsck = `$ENV{MIRRORDAV_BUILD}/mirrordav fsck --volume ${\$s->volume} 2>&1`;
like $fsck, qr/0 problems|^$/m, 'fsck finds nothing to repair' or diag $fsck;

undef $s;
for (1 .. 50) { last if system("umount '$mnt' 2>/dev/null") == 0; sleep 0.1 }
system("umount -l '$mnt' 2>/dev/null");
rmdir $mnt;
done_testing;
