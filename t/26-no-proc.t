#!/usr/bin/env perl
# Without /proc (a container or chroot that does not mount it) an unnamed
# O_TMPFILE file cannot be given a name, so new files start under a named
# temp file instead.  httpd runs in its own mount namespace with an empty
# tmpfs over /proc; PUT (new, replacing, If-None-Match: *), PROPPATCH (the
# sidecar's databases), COPY and MOVE still work, and no temp file is left.
# Needs root (mount namespace); skipped otherwise.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha1_hex);
use File::Find ();
use MirrorDAV::Test qw(slurp);

plan skip_all => 'needs root: httpd runs in a mount namespace without /proc'
    unless $> == 0;
plan skip_all => 'cannot make a mount namespace here (unshare -m failed)'
    unless system('unshare -m --propagation private -- mount -t tmpfs none /proc 2>/dev/null') == 0;

my $s = MirrorDAV::Test->start_server(wrap => [
    'unshare', '-m', '--propagation', 'private', '--', 'sh', '-c',
    'mount -t tmpfs -o size=1m noproc /proc && exec "$@"', 'sh']);
my $live = $s->live;

# httpd's own view of its mounts (read through our /proc): a tmpfs on /proc.
my $mounts = slurp("/proc/" . $s->pid . "/mountinfo") // '';
like($mounts, qr{ /proc \S+.* - tmpfs noproc }m, 'httpd sees a tmpfs over /proc');

sub sha1_prop {
    my ($path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>});
    return $r->{content} =~ m{<(?:\w+:)?sha1\b[^>]*>([0-9a-f]{40})<} ? $1 : '';
}

my $one = join '', map { chr(($_ * 7) % 251) } 1 .. 300_000;
my $two = reverse $one;
is($s->put('/dav/a.bin', $one)->{status}, 201, 'PUT of a new file');
is(slurp("$live/a.bin"), $one, 'it holds the body');
is(sha1_prop('/dav/a.bin'), sha1_hex($one), 'its SHA-1 is recorded');
is($s->put('/dav/a.bin', $two)->{status}, 204, 'PUT over it');
is(slurp("$live/a.bin"), $two, 'it holds the new body');
is(sha1_prop('/dav/a.bin'), sha1_hex($two), 'the new SHA-1 is recorded');

is($s->put('/dav/c.bin', 'created', { 'If-None-Match' => '*' })->{status}, 201,
   'If-None-Match: * creates');
is($s->put('/dav/c.bin', 'again', { 'If-None-Match' => '*' })->{status}, 412,
   'and does not replace');
is(slurp("$live/c.bin"), 'created', 'the first body stays');

my $pp = $s->request('PROPPATCH', '/dav/a.bin', { 'Content-Type' => 'application/xml' },
    q{<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:t"><D:set><D:prop><Z:note>kept</Z:note></D:prop></D:set></D:propertyupdate>});
is($pp->{status}, 207, 'PROPPATCH');
like($s->propfind('/dav/a.bin', 0)->{content}, qr{>kept<}, 'the dead property is stored');

is($s->request('COPY', '/dav/a.bin', { Destination => $s->url('/dav/b.bin') })->{status},
   201, 'COPY to a new name');
is(slurp("$live/b.bin"), $two, 'the copy holds the body');
is($s->put('/dav/c2.bin', $one)->{status}, 201, 'another file');
is($s->request('COPY', '/dav/c2.bin', { Destination => $s->url('/dav/b.bin'),
                                        Overwrite => 'T' })->{status},
   204, 'COPY over an existing file');
is(slurp("$live/b.bin"), $one, 'it holds the source');
like($s->propfind('/dav/b.bin', 0)->{content}, qr{getcontentlength>300000<},
     'PROPFIND of the copy');
is($s->request('MOVE', '/dav/c2.bin', { Destination => $s->url('/dav/d.bin') })->{status},
   201, 'MOVE');
is(slurp("$live/d.bin"), $one, 'the moved file');

my @temps;
File::Find::find(sub { push @temps, $File::Find::name if /^\.(put|tmp)-/ }, $live);
is_deeply(\@temps, [], 'no temporary files left');
unlike($s->error_log, qr/\[(?:dav|mirrordav):error\]/, 'no errors logged');

done_testing;
