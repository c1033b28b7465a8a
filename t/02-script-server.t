#!/usr/bin/env perl
# script/server, as a user runs it: it builds, prints the URLs and serves a
# volume that cadaver can use.  Run on a free port and a fresh volume (the
# defaults, 8080 and ./var/volume, are the same code path with other values).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);
use MirrorDAV::Test qw(slurp spew);

my $top  = MirrorDAV::Test::top();
my $base = tempdir('script-server-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $base;
my $port   = MirrorDAV::Test::free_port();
my $volume = "$base/volume";

my $pid = fork // die;
if (!$pid) {
    POSIX::setpgid(0, 0);
    open STDOUT, '>', "$base/server.out";
    open STDERR, '>&', \*STDOUT;
    $ENV{MIRRORDAV_PORT}   = $port;
    $ENV{MIRRORDAV_VOLUME} = $volume;
    $ENV{MIRRORDAV_RUNDIR} = "$base/run";
    exec "$top/script/server";
    POSIX::_exit(127);
}
END { if ($pid) { kill 'TERM', -$pid; waitpid $pid, 0 } }

my $up = 0;
for (my $t = time; time - $t < 120; sleep 0.1) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 1);
    if ($s) { $up = 1; close $s; last }
    last if waitpid($pid, POSIX::WNOHANG()) == $pid;
}
ok $up, "script/server listens on 127.0.0.1:$port" or diag slurp("$base/server.out");
my $out = slurp("$base/server.out") // '';
like $out, qr{http://127\.0\.0\.1:$port/dav/}, 'it prints the share URL';
ok -d "$volume/live" && -d "$volume/state" && -d "$volume/snapshots", 'the volume was laid out';

# cadaver, scripted: put, ls, get.
spew("$base/hello.txt", "hello from cadaver\n");
local $ENV{HOME} = $base;
my $script = "put $base/hello.txt hello.txt\nls\nget hello.txt $base/back.txt\nquit\n";
open my $cad, '|-', "cadaver http://127.0.0.1:$port/dav/ > $base/cadaver.out 2>&1" or die;
print $cad $script;
close $cad;
my $cout = slurp("$base/cadaver.out") // '';
like $cout, qr/hello\.txt/, 'cadaver lists the file it put' or diag $cout;
is slurp("$base/back.txt"), "hello from cadaver\n", 'and gets it back';
is slurp("$volume/live/hello.txt"), "hello from cadaver\n", 'the file is in the live tree';

# It serves /snapshots/ and prints its URL (SPEC section 1).
like $out, qr{http://127\.0\.0\.1:$port/snapshots/}, 'it prints the snapshots URL';
my $code = `curl -s -o /dev/null -w '%{http_code}' -X MKCOL http://127.0.0.1:$port/snapshots/first`;
is $code, 201, 'MKCOL /snapshots/first takes a snapshot';
is slurp("$volume/snapshots/first/hello.txt"), "hello from cadaver\n", 'the snapshot holds the file';
$code = `curl -s -o /dev/null -w '%{http_code}' -X PROPFIND -H 'Depth: 1' http://127.0.0.1:$port/snapshots/`;
is $code, 207, 'PROPFIND /snapshots/ lists them';

done_testing;
