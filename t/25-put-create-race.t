#!/usr/bin/env perl
# PUT with If-None-Match: * creates and never replaces, even when creators
# race: several clients send their headers for the same new path (each
# passes mod_dav's precondition check, as nothing is there yet), wait at a
# barrier, then send their bodies at once.  Exactly one gets 201, every
# other one 412 with a body naming the cause, and the file holds the
# winner's bytes, with the winner's SHA-1 recorded.
#   ROUNDS=N  rounds of the race (default 12)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha1_hex);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(sleep time);
use MirrorDAV::Test qw(slurp spew);

my $s       = MirrorDAV::Test->start_server;
my $live    = $s->live;
my $tmp     = tempdir('create-race-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $ROUNDS  = $ENV{ROUNDS} || 12;
my $CLIENTS = 6;

sub body_for {
    my ($round, $c) = @_;
    # Distinct bodies of a few hundred KB: long enough that every creator
    # is still receiving when the first one publishes.
    return join '', map { pack 'N', ($round * 1000 + $c) * 7919 + $_ * 31 }
        1 .. 50_000 + $c * 1000;
}

my ($bad_rounds, $winners_ok) = (0, 0);
for my $round (1 .. $ROUNDS) {
    my $path    = "/dav/race$round.bin";
    my $barrier = "$tmp/go$round";
    my @kids;
    for my $c (1 .. $CLIENTS) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $body = body_for($round, $c);
            my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                             PeerPort => $s->port, Timeout => 30)
                or POSIX::_exit(2);
            setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
            binmode $sock;
            syswrite($sock, "PUT $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     . "If-None-Match: *\r\nConnection: close\r\n"
                     . "Content-Length: " . length($body) . "\r\n\r\n"
                     . substr($body, 0, 1000));
            spew("$tmp/ready$round.$c", '');
            sleep 0.005 until -e $barrier;
            my $off = 1000;
            while ($off < length $body) {
                my $n = syswrite($sock, $body, 65536, $off);
                last unless defined $n;
                $off += $n;
            }
            my $reply = '';
            1 while sysread($sock, $reply, 65536, length $reply);
            spew("$tmp/reply$round.$c", $reply);
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    my $deadline = time + 30;
    sleep 0.01 until (grep { -e "$tmp/ready$round.$_" } 1 .. $CLIENTS) == $CLIENTS
        || time > $deadline;
    # Every creator has passed mod_dav's precondition check once the
    # server holds its new (unnamed) file open: count them.
    my $open = 0;
    while (time < $deadline) {
        $open = grep { (readlink($_) // '') =~ m{^\Q$live\E/#\d+ \(deleted\)$} }
            map { glob("/proc/$_/fd/*") } $s->children;
        last if $open >= $CLIENTS;
        sleep 0.01;
    }
    diag("round $round: only $open of $CLIENTS uploads open at the barrier")
        if $open < $CLIENTS;
    spew($barrier, '');
    waitpid($_, 0) for @kids;

    my (@won, @lost, @other);
    for my $c (1 .. $CLIENTS) {
        my $reply = slurp("$tmp/reply$round.$c") // '';
        my ($status) = $reply =~ m{^HTTP/1\.1 (\d{3})};
        $status //= 0;
        if ($status == 201) { push @won, $c }
        elsif ($status == 412 && $reply =~ /If-None-Match/) { push @lost, $c }
        else { push @other, "$c: " . (split /\r\n/, $reply)[0] // 'no reply' }
    }
    my $got = slurp("$live/race$round.bin") // '';
    my $ok = @won == 1 && @lost == $CLIENTS - 1 && !@other;
    if (!$ok) {
        $bad_rounds++;
        diag("round $round: 201 from [@won], 412 from [@lost], other [@other]");
    }
    if (@won == 1) {
        my $want = body_for($round, $won[0]);
        my $r = $s->propfind("/dav/race$round.bin", 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>});
        my ($sha) = $r->{content} =~ m{<(?:\w+:)?sha1\b[^>]*>([0-9a-f]{40})<};
        if ($got eq $want && ($sha // '') eq sha1_hex($want)) { $winners_ok++ }
        else { diag("round $round: the file or its SHA-1 is not the winner's") }
    }
}
is($bad_rounds, 0, "every round: exactly one 201, the others 412 ($ROUNDS rounds of $CLIENTS)");
is($winners_ok, $ROUNDS, "the file and its recorded SHA-1 are the winner's");

opendir my $dh, "$live/.mirrordav" or die;
my @temps = grep { /^\.(put|tmp)-/ } readdir $dh;
is_deeply(\@temps, [], 'no temporary files left');

# The precondition still holds when the file is already there at the start.
my $r = $s->request('PUT', '/dav/race1.bin', { 'If-None-Match' => '*' }, 'late');
is($r->{status}, 412, 'If-None-Match: * on an existing file: 412');

done_testing;
