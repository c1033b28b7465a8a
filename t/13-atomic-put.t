#!/usr/bin/env perl
# Writes are atomic (SPEC section 2): (a) readers see the old file or the new
# one, never a mix, while 64 MiB PUTs rewrite it; (b) a server killed with -9
# in the middle of a PUT leaves the old file, and the temporary file it was
# writing never shows over WebDAV.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use Digest::SHA ();
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use MirrorDAV::Test qw(slurp spew sha1_file random_file);

my $srv  = MirrorDAV::Test->start_server;
my $live = $srv->live;
my $tmp  = File::Temp::tempdir('atomic-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $SIZE = 64 << 20;

sub curl_put {
    my ($path, $file) = @_;
    my $code = `curl -s -o /dev/null -w '%{http_code}' --max-time 120 -T '$file' '${\$srv->url($path)}'`;
    return $code;
}

# Polls COND every 20 ms until it is true or SECONDS pass; returns its value.
sub wait_for {
    my ($seconds, $cond) = @_;
    my $deadline = time + $seconds;
    while (1) {
        my $v = $cond->();
        return $v if $v || time > $deadline;
        sleep 0.02;
    }
}

# ------------------------------------------------ (a) readers never see a mix
my $A = random_file("$tmp/A", $SIZE);
my $B = random_file("$tmp/B", $SIZE);
my %sha = (sha1_file($A) => 'A', sha1_file($B) => 'B');
is(scalar(keys %sha), 2, 'A and B differ');

like(curl_put('/dav/big.bin', $A), qr/^20[14]$/, 'PUT version A');
is(sha1_file("$live/big.bin"), sha1_file($A), 'version A stored');

# The reader: GETs in a loop, one line per response, until told to stop.
my $results = "$tmp/gets";
my $stop    = "$tmp/stop";
my @readers;
for my $n (1 .. 2) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open my $out, '>>', $results or POSIX::_exit(2);
        $out->autoflush(1);
        my $http = HTTP::Tiny->new(timeout => 60, keep_alive => 1);
        until (-e $stop) {
            my $d = Digest::SHA->new(1);
            my $got = 0;
            my $res = $http->get($srv->url('/dav/big.bin'), { data_callback => sub {
                $d->add($_[0]);
                $got += length $_[0];
            } });
            printf $out "%s %d %s %s\n", $res->{status}, $got,
                $res->{headers}{'content-length'} // '-', $d->hexdigest;
        }
        close $out;
        POSIX::_exit(0);
    }
    push @readers, $pid;
}

sub gets_so_far { my $t = slurp($results) // ''; scalar(() = $t =~ /\n/g) }

ok(wait_for(30, sub { gets_so_far() >= 1 }), 'the readers are running');
my ($puts, @put_codes) = (0);
my $deadline = time + 150;
while (($puts < 50 || gets_so_far() < 20) && time < $deadline) {
    my $file = $puts % 2 ? $A : $B;
    push @put_codes, curl_put('/dav/big.bin', $file);
    $puts++;
}
my $last = $puts % 2 ? 'B' : 'A';   # the last PUT sent
spew($stop, '');
for my $pid (@readers) {
    my $ok = wait_for(60, sub { waitpid($pid, POSIX::WNOHANG()) == $pid });
    unless ($ok) { kill 'KILL', $pid; waitpid($pid, 0) }
}

cmp_ok($puts, '>=', 50, "$puts PUT rewrites");
my @bad_puts = grep { !/^20[14]$/ } @put_codes;
is(scalar(@bad_puts), 0, 'every PUT succeeded') or diag("codes: @bad_puts");

my @lines = split /\n/, slurp($results) // '';
cmp_ok(scalar(@lines), '>=', 20, scalar(@lines) . ' GETs completed meanwhile');
my (%seen, @bad);
for my $l (@lines) {
    my ($status, $got, $clen, $sum) = split ' ', $l;
    if ($status eq '200' && $got == $SIZE && $clen eq $SIZE && $sha{$sum}) {
        $seen{$sha{$sum}}++;
    } else {
        push @bad, $l;
    }
}
is(scalar(@bad), 0, 'every GET returned all of A or all of B')
    or diag("bad GETs (status bytes content-length sha1):\n" . join "\n", @bad[0 .. ($#bad > 19 ? 19 : $#bad)]);
note('GETs saw A ' . ($seen{A} // 0) . ' times, B ' . ($seen{B} // 0) . ' times');
is(sha1_file("$live/big.bin"), sha1_file($last eq 'A' ? $A : $B), "the file ends as the last PUT ($last)");
my @tmps = glob("$live/.mirrordav/.put-*");
is(scalar(@tmps), 0, 'no temporary file is left behind') or diag("@tmps");
unlink $A, $B;

# ------------------------------------------------ (b) kill -9 in mid-PUT
my $old = random_file("$tmp/old", 3 << 20);
my $old_sha = sha1_file($old);
is(curl_put('/dav/victim.bin', $old), '201', 'PUT the old version');
is(sha1_file("$live/victim.bin"), $old_sha, 'old version on disk');

local $SIG{PIPE} = 'IGNORE';
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->port,
                                  Timeout => 10) or die "connect: $!";
my $body_len = 100 << 20;
print $sock "PUT /dav/victim.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
          . "Content-Type: application/octet-stream\r\n"
          . "Content-Length: $body_len\r\n\r\n";
my $chunk = 'N' x (256 * 1024);      # the new version: far from complete
my $sent = 0;
# The body is being written once an httpd child holds a non-empty file
# under live/ that has no name of its own yet: an unnamed O_TMPFILE inode
# ("live/#123 (deleted)") or, where that is unsupported, a .put- temp file.
sub upload_in_progress {
    for my $pid ($srv->children) {
        for my $fd (glob "/proc/$pid/fd/*") {
            my $target = readlink($fd) // next;
            next unless index($target, "$live/") == 0;
            next unless $target =~ m{/#\d+ \(deleted\)$} || $target =~ m{/\.mirrordav/\.put-};
            return $target if -s $fd;
        }
    }
    return;
}
my $temp = wait_for(30, sub {
    my $t = upload_in_progress();
    return $t if $t;
    if ($sent < (32 << 20)) {
        defined(syswrite($sock, $chunk)) or return;
        $sent += length $chunk;
    }
    return;
});
ok($temp, "the upload's temporary file is being written ($sent bytes sent): " . ($temp // ''))
    or diag("files in live/.mirrordav: " . join ' ', glob("$live/.mirrordav/* $live/.mirrordav/.*"));

$srv->crash;
close $sock;
$srv->restart;

my $r = $srv->get('/dav/victim.bin');
is($r->{status}, 200, 'GET after the crash');
ok($r->{content} eq slurp($old), 'the old version is intact, byte for byte (GET)')
    or diag('got ' . length($r->{content}) . ' bytes, sha1 ' . Digest::SHA::sha1_hex($r->{content}));
is(sha1_file("$live/victim.bin"), $old_sha, 'the old version is intact on disk');
my @left = glob("$live/.mirrordav/.put-*");
note('temporary files on disk after the crash: ' . (@left ? "@left" : 'none'));
if ($temp && $temp =~ m{/\.mirrordav/\.put-}) {
    (my $name = $temp) =~ s{.*/}{};
    is($srv->get("/dav/.mirrordav/$name")->{status}, 404, 'GET of the temporary file is 404');
}

for my $depth (1, 'infinity') {
    $r = $srv->propfind('/dav/', $depth);
    if ($depth eq 'infinity' && $r->{status} == 403) {
        note('Depth: infinity PROPFIND refused with 403');
        next;
    }
    is($r->{status}, 207, "PROPFIND Depth $depth of the parent");
    like($r->{content}, qr{/dav/victim\.bin</}, "... lists victim.bin");
    unlike($r->{content}, qr/\.put-/, '... lists no temporary file');
    unlike($r->{content}, qr/\.mirrordav/, '... does not list .mirrordav');
}

# The server works on after the crash: the same file can be rewritten.
my $new = random_file("$tmp/new", 1 << 20);
like(curl_put('/dav/victim.bin', $new), qr/^20[14]$/, 'PUT after the restart');
is(sha1_file("$live/victim.bin"), sha1_file($new), 'the new version is stored');

# ------------------------------------------------ (c) the client goes away
# A client that disconnects in mid-body: the old version stays, nothing of
# the partial body is left anywhere, and the server goes on serving.
{
    my $keep = sha1_file("$live/victim.bin");
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->port,
                                  Timeout => 10) or die "connect: $!";
    print $c "PUT /dav/victim.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           . "Content-Length: " . (64 << 20) . "\r\n\r\n";
    syswrite($c, 'X' x (256 * 1024)) for 1 .. 16;   # 4 MiB of 64
    ok(wait_for(10, sub { upload_in_progress() }), 'the partial upload is being written');
    close $c;
    ok(wait_for(10, sub { !upload_in_progress() }), 'the server lets go of it once the client is gone');
    is(sha1_file("$live/victim.bin"), $keep, 'the old version is intact');
    my @left = glob("$live/.mirrordav/.put-*");
    is(scalar(@left), 0, 'no temporary file is left') or diag("@left");
    my $fsck = `$ENV{MIRRORDAV_BUILD}/mirrordav fsck --volume ${\$srv->volume} 2>&1`;
    is($? >> 8, 0, 'fsck finds the volume clean') or diag($fsck);
    like(curl_put('/dav/after.bin', $new), qr/^201$/, 'the server goes on serving');
}

# ------------------------------------------- (d) the name before its record
# The order of a PUT's durable steps, read from the system calls (strace on
# the running server): the file is published under its name, the
# directory is fsynced, and only then is the sidecar record (a database in
# .mirrordav/) published.  A record made durable first could outlive a
# name that a crash takes back.
SKIP: {
    my ($strace) = grep { -x } map { "$_/strace" } split /:/, "$ENV{PATH}:/usr/bin";
    skip 'strace is not installed', 3 unless $strace;
    like(curl_put('/dav/order.bin', $new), qr/^201$/, 'PUT order.bin');
    my @pids  = ($srv->pid, $srv->children);
    my $trace = "$tmp/strace";
    my $st    = fork // die "fork: $!";
    if (!$st) {
        { exec $strace, '-f', '-qq', '-o', $trace,
              '-e', 'trace=openat,fsync,linkat,rename,renameat,renameat2',
              map { ('-p', $_) } @pids };
        POSIX::_exit(127);
    }
    ok(wait_for(10, sub { -s $trace || 0 }) || sleep(1), 'strace attached');
    sleep 0.5;
    my $code = curl_put('/dav/order.bin', random_file("$tmp/order", 1 << 20));
    kill 'INT', $st;
    waitpid($st, 0);
    my (%dirfd, $name_at, $dirsync_at, $record_at);
    my @lines = split /\n/, slurp($trace) // '';
    for my $i (0 .. $#lines) {
        my ($tid, $call) = $lines[$i] =~ /^(\d+)\s+(.*)$/ or next;
        if (my ($path, $flags, $fd) =
                $call =~ /^openat\(AT_FDCWD, "([^"]*)", ([^)]*)\)\s+= (\d+)/) {
            # Whether this descriptor is now the target's directory.
            $dirfd{"$tid/$fd"} = $path eq $live && $flags =~ /O_DIRECTORY/;
        }
        elsif ($call =~ /^fsync\((\d+)\)\s+= 0/ && $dirfd{"$tid/$1"}) {
            $dirsync_at //= $i if defined $name_at;
        }
        elsif ($call =~ /^(?:linkat|rename\w*)\(.*"\Q$live\E\/order\.bin".*\)\s+= 0$/) {
            $name_at //= $i;
        }
        elsif ($call =~ /^(?:linkat|rename\w*)\(.*"\Q$live\E\/\.mirrordav\/(?!\.tmp-|\.put-)[^"]+".*\)\s+= 0$/) {
            $record_at //= $i if defined $name_at;
        }
    }
    my $order = join ' < ', map { $_->[0] } sort { $a->[1] <=> $b->[1] }
        grep { defined $_->[1] } ['name', $name_at], ['directory fsync', $dirsync_at],
        ['record', $record_at];
    ok(defined $name_at && defined $dirsync_at && defined $record_at
       && $name_at < $dirsync_at && $dirsync_at < $record_at,
       "PUT ($code): name, then directory fsync, then record (seen: $order)")
        or diag("trace:\n" . join "\n", grep { /\Q$live\E|fsync/ } @lines);
}

done_testing;
