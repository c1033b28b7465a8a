package MirrorDAV::RawClient;

# A raw-socket HTTP client for the tests that drive request bodies the way
# real clients send them: TCP_NODELAY, the bytes of a request cut into
# pieces by a write plan (the head and the first body bytes in one packet,
# many small writes with pauses, random cuts), and responses read off a
# keep-alive connection.  Used by t/24 (PUT) and t/73 (PATCH-APPLY).

use strict;
use warnings;
use Exporter 'import';
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(rnd plan_split connect_raw send_pieces read_response);

sub rnd { my ($lo, $hi) = @_; $lo + int rand($hi - $lo + 1) }

# Write plans: how the bytes of a request go out.  Each returns a list of
# [bytes, pause-after] pieces.
sub plan_split {
    my ($raw, $hdr_len, $kind) = @_;
    my @cuts;
    my $len = length $raw;
    if ($kind eq 'header_packet') {
        # The head and the first body bytes in one packet, the rest after.
        my $k = $hdr_len + rnd(1, 2000);
        $k = $len if $k > $len;
        push @cuts, [$k, 0.002];
    }
    elsif ($kind eq 'small') {
        # Many small writes, a pause now and then; at most ~150 writes.
        my $step = int($len / 150) + 1;
        my $pos  = 0;
        while ($pos < $len) {
            $pos += rnd(1, $step > 3000 ? $step : 3000);
            push @cuts, [$pos, rand() < 0.15 ? rand(0.003) : 0];
        }
    }
    elsif ($kind eq 'random') {
        my @p = sort { $a <=> $b } map { rnd(1, $len) } 1 .. rnd(1, 12);
        push @cuts, [$_, rand() < 0.5 ? rand(0.002) : 0] for @p;
    }
    my (@pieces, $from);
    $from = 0;
    for my $c (@cuts) {
        my ($to, $pause) = @$c;
        $to = $len if $to > $len;
        next if $to <= $from;
        push @pieces, [substr($raw, $from, $to - $from), $pause];
        $from = $to;
    }
    push @pieces, [substr($raw, $from), 0] if $from < $len;
    return @pieces;
}

sub connect_raw {
    my ($port) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Timeout => 10)
        or die "connect: $!";
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1) or die "TCP_NODELAY: $!";
    binmode $sock;
    return $sock;
}

# Reads one response from a keep-alive connection: [status, body, headers].
sub read_response {
    my ($sock, $bufref) = @_;
    my $deadline = time + 60;
    my $fill = sub {
        my $n = sysread($sock, $$bufref, 65536, length $$bufref);
        die "connection closed or failed while reading a response\n"
            unless $n;
        die "timeout reading a response\n" if time > $deadline;
    };
    $fill->() until $$bufref =~ /\r\n\r\n/;
    $$bufref =~ s/^(.*?)\r\n\r\n//s;
    my ($status_line, @lines) = split /\r\n/, $1;
    my ($status) = $status_line =~ m{^HTTP/\S+ (\d{3})} or die "bad status line";
    my %h;
    /^([^:]+):\s*(.*)$/ and $h{lc $1} = $2 for @lines;
    my $body = '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            $fill->() until $$bufref =~ /^([0-9a-fA-F]+)[^\r\n]*\r\n/;
            my $n = hex $1;
            $fill->() while length($$bufref) < length($&) + $n + 2;
            $$bufref =~ s/^[^\r\n]*\r\n//;
            $body .= substr($$bufref, 0, $n, '');
            $$bufref =~ s/^\r\n//;
            last unless $n;
        }
    }
    else {
        my $n = $h{'content-length'} // 0;
        $fill->() while length($$bufref) < $n;
        $body = substr($$bufref, 0, $n, '');
    }
    return [$status, $body, \%h];
}

sub send_pieces {
    my ($sock, @pieces) = @_;
    for my $p (@pieces) {
        my ($data, $pause) = @$p;
        my $off = 0;
        while ($off < length $data) {
            my $n = syswrite($sock, $data, length($data) - $off, $off);
            return 0 unless defined $n;   # the server closed on us
            $off += $n;
        }
        sleep $pause if $pause;
    }
    return 1;
}

1;
