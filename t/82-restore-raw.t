#!/usr/bin/env perl
# The restore form's body (browser_restore.c reads it itself) from a
# raw-socket client: the urlencoded fields split at random points, the
# first body bytes in the header packet, tiny chunks with pauses, a large
# header block, keep-alive.  Each good POST restores (200, the snapshot's
# bytes in the live file); the same body with a wrong token is refused
# (403) and changes nothing, however it is cut.  Seed printed
# (MIRRORDAV_SEED replays), MIRRORDAV_RESTORE_CASES sets the rounds.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha1_hex);
use MirrorDAV::Test qw(slurp);
use MirrorDAV::RawClient qw(rnd plan_split connect_raw send_pieces read_response);

my $seed = $ENV{MIRRORDAV_SEED} // int(rand(1_000_000));
srand $seed;
diag("seed $seed (MIRRORDAV_SEED=$seed replays this run)");
my $rounds = $ENV{MIRRORDAV_RESTORE_CASES} // 40;

my $s = MirrorDAV::Test->start_server();
my $live = $s->live;
my $old = "the version kept in the snapshot\n" x 3;
is($s->put('/dav/f.txt', $old)->{status}, 201, 'PUT the old version');
is($s->mkcol('/snapshots/s1')->{status}, 201, 'snapshot s1');
my $page = $s->get('/dav/f.txt?versions', { Accept => 'text/html,application/xhtml+xml' });
my ($token) = $page->{content} =~ /name="token" value="([0-9a-f]+)"/;
ok($token, 'a token from the versions page') or BAIL_OUT('no restore form');
my $origin = 'http://127.0.0.1:' . $s->port;

sub request {
    my ($tok, $kind, $chunked, $pad) = @_;
    my $body = "action=restore&snapshot=s1&token=$tok";
    my $head = "POST /dav/f.txt HTTP/1.1\r\nHost: 127.0.0.1:" . $s->port . "\r\n"
        . "Origin: $origin\r\nContent-Type: application/x-www-form-urlencoded\r\n";
    $head .= 'X-Pad: ' . ('p' x 7000) . "\r\n" if $pad;
    if ($chunked) {
        my ($enc, $pos) = ('', 0);
        while ($pos < length $body) {
            my $n = rnd(1, 5);
            $enc .= sprintf("%x\r\n", length substr($body, $pos, $n)) . substr($body, $pos, $n) . "\r\n";
            $pos += $n;
        }
        $body = $enc . "0\r\n\r\n";
        $head .= "Transfer-Encoding: chunked\r\n\r\n";
    }
    else {
        $head .= 'Content-Length: ' . length($body) . "\r\n\r\n";
    }
    my $raw = $head . $body;
    return ($raw, length $head);
}

my $sock = connect_raw($s->port);
my $buf = '';
my %seen;
for my $i (1 .. $rounds) {
    my $kind = (qw(header_packet small random))[$i % 3];
    my $chunked = rnd(0, 1);
    my $pad = rnd(0, 3) == 0;
    my $what = join '+', $kind, $chunked ? 'chunked' : (), $pad ? 'pad' : ();
    $seen{$what}++;
    my $now = "live version $i\n";
    is($s->put('/dav/f.txt', $now)->{status}, 204, "round $i: PUT a newer live version");

    # A wrong token, cut the same way: 403, nothing restored.
    my ($raw, $hl) = request('0' x length $token, $kind, $chunked, $pad);
    send_pieces($sock, plan_split($raw, $hl, $kind)) or die 'server closed';
    my $r = read_response($sock, \$buf);
    is($r->[0], 403, "round $i ($what): a wrong token is refused");
    is(slurp("$live/f.txt"), $now, '... the live file unchanged');

    ($raw, $hl) = request($token, $kind, $chunked, $pad);
    send_pieces($sock, plan_split($raw, $hl, $kind)) or die 'server closed';
    $r = read_response($sock, \$buf);
    is($r->[0], 200, "round $i ($what): restored") or diag($r->[1]);
    is(sha1_hex(slurp("$live/f.txt")), sha1_hex($old), '... the snapshot\'s bytes are live again');
    if (($r->[2]{connection} // '') =~ /close/i) {
        close $sock;
        ($sock, $buf) = (connect_raw($s->port), '');
    }
}
diag(join ', ', map { "$_ $seen{$_}" } sort keys %seen);
done_testing();
