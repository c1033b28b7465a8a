#!/usr/bin/env perl
# XML request bodies (SPEC section 10): size-limited, and entity
# expansion refused, with the server unharmed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MirrorDAV::Test;

my $s = MirrorDAV::Test->start_server;
is $s->put('/dav/f.txt', "x")->{status}, 201, 'PUT a file';

# Larger than LimitXMLRequestBody (1 MiB in the configuration).
my $big = '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:big>'
        . ('a' x (2 << 20)) . '</Z:big></D:prop></D:set></D:propertyupdate>';
my $r = $s->request('PROPPATCH', '/dav/f.txt', { 'Content-Type' => 'application/xml' }, $big);
is $r->{status}, 413, 'a 2 MiB PROPPATCH body is refused: 413';
$r = $s->propfind('/dav/f.txt', 0);
unlike $r->{content}, qr/big/, '... and nothing was stored';

# The "billion laughs": nested entities that would expand to gigabytes.
my $dtd = qq{<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">}
  . join('', map { my $p = chr(ord('a') + $_ - 1); my $c = chr(ord('a') + $_);
                   qq{<!ENTITY $c "} . ("&$p;" x 10) . '">' } 1 .. 9) . ']>';
my $bomb = qq{<?xml version="1.0"?>$dtd<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">}
         . '<D:set><D:prop><Z:laugh>&j;</Z:laugh></D:prop></D:set></D:propertyupdate>';
$r = $s->request('PROPPATCH', '/dav/f.txt', { 'Content-Type' => 'application/xml' }, $bomb);
is $r->{status}, 400, 'an entity-expansion body is refused: 400';
$r = $s->propfind('/dav/f.txt', 0);
unlike $r->{content}, qr/laugh/, '... and nothing was stored';
$r = $s->request('PROPFIND', '/dav/f.txt', { Depth => 0, 'Content-Type' => 'application/xml' },
    qq{<?xml version="1.0"?>$dtd<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>});
is $r->{status}, 400, 'the same in a PROPFIND: 400';
is $s->get('/dav/f.txt')->{status}, 200, 'the server goes on serving';

done_testing;
