#!/usr/bin/env perl
# Point-in-time consistency (SPEC section 6): a snapshot holds every write
# that was answered before it began and none that began after it, sidecars
# included.  8 clients each PUT numbered files in sequence (each waits for
# its reply before the next) while 20 snapshots are taken over HTTP
# (MKCOL /snapshots/sN).  In every snapshot each client's files form a
# gap-free prefix of its sequence, every file is complete, its SHA-1
# (served from the snapshot's sidecar) matches its bytes, and every PUT
# answered before the MKCOL was sent is in it.  Then slow writers: a
# snapshot asked for during a slow PUT is taken at once without it (the
# upload goes to an unnamed file; the PUT takes the barrier only to link
# it in); one asked for during a slow PROPPATCH waits for it and holds it;
# one that would wait longer than MirrorDAVSnapshotTimeout fails cleanly
# (503, nothing listed) and the write succeeds.
# MIRRORDAV_SOAK=N takes N snapshots instead of 20.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use HTTP::Tiny;
use IO::Socket::INET;
use Digest::SHA qw(sha1_hex);
use POSIX ();
use Time::HiRes qw(time sleep);
use File::Temp ();
use MirrorDAV::Test qw(slurp spew);

my $SNAPS   = $ENV{MIRRORDAV_SOAK} || 20;
my $CLIENTS = 8;
my $srv = MirrorDAV::Test->start_server(
    conf_extra => "<Location /snapshots>\n    MirrorDAVSnapshotTimeout 3\n</Location>");
my $vol = $srv->volume;
my $tmp = File::Temp::tempdir('barrier-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $NS  = 'http://mirrordav.org/ns';

sub body_of { my ($c, $i) = @_; sprintf("client %d file %05d\n", $c, $i) x 200 }

# ---------------------------------------------------------------- clients
for my $c (1 .. $CLIENTS) {
    is($srv->mkcol("/dav/c$c")->{status}, 201, "MKCOL c$c");
}
my @pids;
for my $c (1 .. $CLIENTS) {
    my $pid = fork // die;
    if (!$pid) {
        # Each reply's arrival time, written once the run ends.
        my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 120);
        my @log;
        for (my $i = 0; !-e "$tmp/stop"; $i++) {
            my $r = $http->request('PUT', $srv->url(sprintf('/dav/c%d/%05d', $c, $i)),
                                   { content => body_of($c, $i) });
            my $t = time;
            if ($r->{status} != 201) { push @log, "fail $i $r->{status}"; last }
            push @log, "$i $t";
        }
        spew("$tmp/log$c", join("\n", @log) . "\n");
        POSIX::_exit(0);
    }
    push @pids, $pid;
}

# ---------------------------------------------------------------- snapshots
my %sent;
sleep 0.2;
for my $n (1 .. $SNAPS) {
    $sent{$n} = time;
    my $r = $srv->mkcol("/snapshots/s$n");
    is($r->{status}, 201, "snapshot s$n taken while 8 clients write") or diag($r->{content});
    sleep 0.05 + rand(0.1);
}
spew("$tmp/stop", '');
waitpid($_, 0) for @pids;

my %answered;   # client => [ [index, reply time], ... ]
for my $c (1 .. $CLIENTS) {
    my @l = split /\n/, slurp("$tmp/log$c") // '';
    ok(!grep(/^fail/, @l), "client $c: every PUT succeeded") or diag(join ' ', grep /^fail/, @l);
    $answered{$c} = [ map { [ split / / ] } grep !/^fail/, @l ];
    ok(@{ $answered{$c} } > 5, "client $c wrote " . scalar(@{ $answered{$c} }) . ' files');
}

# ---------------------------------------------------------------- checks
my (@gaps, @torn, @hash, @missed);
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 120);
for my $n (1 .. $SNAPS) {
    for my $c (1 .. $CLIENTS) {
        my $dir = "$vol/snapshots/s$n/c$c";
        opendir(my $dh, $dir) or die "$dir: $!";
        my @names = sort grep { !/^\./ } readdir $dh;
        closedir $dh;
        my @want = map { sprintf '%05d', $_ } 0 .. $#names;
        push @gaps, "s$n/c$c: @names[0 .. ($#names < 9 ? $#names : 9)] ..."
            if "@names" ne "@want";
        for my $f (@names) {
            push @torn, "s$n/c$c/$f" if slurp("$dir/$f") ne body_of($c, 0 + $f);
        }
        # Every PUT answered before the MKCOL was sent is in the snapshot.
        my @due = grep { $_->[1] < $sent{$n} } @{ $answered{$c} };
        push @missed, "s$n/c$c: answered up to $due[-1][0], holds " . scalar(@names)
            if @due && $due[-1][0] >= @names;
        # The SHA-1 from the snapshot's sidecar, through the server.
        my $r = $http->request('PROPFIND', $srv->url("/snapshots/s$n/c$c/"), {
            headers => { Depth => 1, 'Content-Type' => 'application/xml' },
            content => qq{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="$NS">}
                     . qq{<D:prop><M:sha1/></D:prop></D:propfind>} });
        my %sha;
        for (split m{</D:response>}, $r->{content}) {
            my ($href) = m{<D:href>[^<]*/(\d{5})</D:href>} or next;
            ($sha{$href}) = m{sha1>([0-9a-f]{40})<};
        }
        for my $f (@names) {
            push @hash, "s$n/c$c/$f" unless ($sha{$f} // '') eq sha1_hex(body_of($c, 0 + $f));
        }
    }
}
is_deeply(\@gaps, [], "in every snapshot each client's files are a gap-free prefix");
is_deeply(\@torn, [], 'every file in every snapshot is complete');
is_deeply(\@hash, [], "every file's sidecar SHA-1 in the snapshot matches its bytes");
is_deeply(\@missed, [], 'every PUT answered before a snapshot began is in it');

# ---------------------------------------------------------------- slow writers
# Sends METHOD PATH with DATA spread over SECONDS, in a child; slow_result
# gives the reply's status and the time the last piece of the body began
# to go out (taken before it is written, so that the server's answer to
# it, and all that follows, can only come later).
sub slow_request {
    my ($method, $path, $data, $seconds, $ctype) = @_;
    my $pid = fork // die;
    return $pid if $pid;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->port) or die;
    binmode $s;
    $s->autoflush(1);
    print $s "$method $path HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
           . "Content-Type: $ctype\r\nContent-Length: " . length($data) . "\r\n\r\n";
    my $chunks = 30;
    my $len = int(length($data) / $chunks) + 1;
    my $sent;   # when the last piece of the body began to go out
    for (my $o = 0; $o < length $data; $o += $len) {
        sleep($seconds / $chunks) if $o;
        $sent = time;
        print $s substr($data, $o, $len);
    }
    my $reply = '';
    while (sysread($s, $reply, 4096, length $reply)) {}
    my ($st) = $reply =~ m{^HTTP/1\.1 (\d+)};
    spew("$tmp/slow$$", ($st // 0) . " $sent\n");
    POSIX::_exit(0);
}
sub slow_result { my ($pid) = @_; waitpid($pid, 0); split / /, slurp("$tmp/slow$pid") }
sub note_patch {
    my ($v) = @_;
    qq{<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test"><D:set><D:prop>}
  . qq{<Z:note>$v</Z:note></D:prop></D:set></D:propertyupdate>} . (' ' x 3000);
}
sub note_in {
    my ($path) = @_;
    my $r = $srv->propfind($path, 0, '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" '
        . 'xmlns:Z="urn:test"><D:prop><Z:note/></D:prop></D:propfind>');
    return ($r->{content} =~ m{<[^>]*note[^>]*>([^<]*)<})[0] // '';
}

# A slow upload does not hold snapshots up: its body goes to an unnamed
# file, and it takes the barrier only to link it in.  A snapshot asked for
# meanwhile is taken at once, without it; the next one has it.
my $data = 'slow body ' x 20000;
my $pid = slow_request('PUT', '/dav/slow-a.bin', $data, 3, 'application/octet-stream');
sleep 0.5;
my $r = $srv->mkcol('/snapshots/during-put');
my $mkcol_done = time;
my ($st, $body_sent) = slow_result($pid);
is($r->{status}, 201, 'a snapshot asked for during a slow PUT is taken') or diag($r->{content});
# Not a speed assertion: it proves the snapshot did not wait for the upload.
ok($mkcol_done < $body_sent, '... without waiting for the upload');
is($st, 201, 'the slow PUT succeeded');
ok(!-e "$vol/snapshots/during-put/slow-a.bin", '... and is not in that snapshot (answered after it)');
ok(!-e "$vol/snapshots/during-put/.mirrordav/slow-a.bin.db", '... nor its sidecar');
is($srv->mkcol('/snapshots/after-put')->{status}, 201, 'the next snapshot');
is(slurp("$vol/snapshots/after-put/slow-a.bin"), $data, '... holds the whole file');
ok(-e "$vol/snapshots/after-put/.mirrordav/slow-a.bin.db", '... and its sidecar');

# A write whose body mod_dav reads before changing anything (PROPPATCH)
# holds the barrier from the start: the snapshot waits for it and holds it.
is($srv->put('/dav/target.txt', "t\n")->{status}, 201, 'PUT target.txt');
$pid = slow_request('PROPPATCH', '/dav/target.txt', note_patch('one'), 1.5, 'application/xml');
sleep 0.5;
$r = $srv->mkcol('/snapshots/slow-a');
$mkcol_done = time;
($st, $body_sent) = slow_result($pid);
is($st, 207, 'the slow PROPPATCH succeeded');
is($r->{status}, 201, 'a snapshot asked for during it waited and was taken') or diag($r->{content});
# Not a speed assertion: without the wait the snapshot of this small tree
# would be answered about a second before the body was out.
ok($body_sent <= $mkcol_done, '... answered only after the whole PROPPATCH body was in');
is(note_in('/snapshots/slow-a/target.txt'), 'one', '... and the snapshot holds the property');

# One slower than MirrorDAVSnapshotTimeout (3 s): the snapshot fails
# cleanly, the write succeeds, the next snapshot holds it.
$pid = slow_request('PROPPATCH', '/dav/target.txt', note_patch('two'), 5, 'application/xml');
sleep 0.5;
$r = $srv->mkcol('/snapshots/slow-b');
is($r->{status}, 503, 'a snapshot that waits longer than MirrorDAVSnapshotTimeout: 503');
like($r->{content}, qr/not taken/i, '... naming the cause') or diag($r->{content});
($st) = slow_result($pid);
is($st, 207, 'the slow write it waited for still succeeded');
ok(!-e "$vol/snapshots/slow-b" && !-e "$vol/state/snapshots/slow-b.rec",
   'nothing was left of the failed snapshot');
opendir(my $dh, "$vol/snapshots") or die;
is_deeply([sort grep { !/^\.\.?$/ } readdir $dh],
          [sort('during-put', 'after-put', 'slow-a', map { "s$_" } 1 .. $SNAPS)],
          'no temporary tree left behind');
$r = $srv->mkcol('/snapshots/slow-c');
is($r->{status}, 201, 'the next snapshot is taken');
is(note_in('/snapshots/slow-c/target.txt'), 'two', '... and holds the slow write');

done_testing();
