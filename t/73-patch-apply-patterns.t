#!/usr/bin/env perl
# PATCH-APPLY reads its body itself (a librsync job fed as the bytes
# arrive), so its input path is driven the way real clients send: a
# raw-socket client (t/lib/MirrorDAV/RawClient.pm) cuts each request into
# pieces by a random write plan (the head and the first delta bytes in one
# packet, many small writes with pauses, random cuts), with chunked bodies
# of tiny chunks, gzip bodies and several KB of extra headers, several
# requests on one keep-alive connection.  Each result is compared byte for
# byte with `rdiff patch`'s.
#   MIRRORDAV_SEED=N             replays one run (the seed is printed)
#   MIRRORDAV_PATCH_CASES=N      number of cases (default 150)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use IO::Compress::Gzip qw(gzip $GzipError);
use MirrorDAV::Test qw(slurp spew);
use MirrorDAV::RawClient qw(rnd plan_split connect_raw send_pieces read_response);

plan skip_all => 'rdiff is not installed' if system('command -v rdiff >/dev/null 2>&1');
my $seed  = $ENV{MIRRORDAV_SEED} // (time ^ $$) % 1000000;
my $CASES = $ENV{MIRRORDAV_PATCH_CASES} // 150;
diag("seed $seed (MIRRORDAV_SEED=$seed replays this run)");
srand($seed);

my $s   = MirrorDAV::Test->start_server(fsync => 'Off');
my $tmp = File::Temp::tempdir('patch-patterns-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $POOL = join '', map { pack 'N', int rand 4294967296 } 1 .. (1 << 18);
sub bytes_of { my $n = shift; my $o = ''; $o .= substr($POOL, rnd(0, length($POOL) - 4096), 4096) while length $o < $n; substr($o, 0, $n) }

# The next version of OLD: an insertion, a deletion, an overwrite or an
# append somewhere, never empty.
sub edit {
    my ($old) = @_;
    my $new = $old;
    my $at  = rnd(0, length $new);
    my $k   = rand;
    if    ($k < 0.3) { substr($new, $at, 0) = bytes_of(rnd(1, 20000)) }
    elsif ($k < 0.5) { substr($new, $at, rnd(0, 20000)) = '' }
    elsif ($k < 0.8) { substr($new, $at, rnd(1, 20000)) = bytes_of(rnd(1, 20000)) }
    else             { $new .= bytes_of(rnd(1, 30000)) }
    $new = bytes_of(rnd(1, 1000)) unless length $new;
    return $new;
}

# A PATCH-APPLY request for DELTA making a file of LEN bytes.
sub request {
    my ($path, $delta, $len, %o) = @_;
    my $wire = $delta;
    my @h = ("PATCH-APPLY $path HTTP/1.1", 'Host: 127.0.0.1:' . $s->port,
             'Content-Range: ' . (rand() < 0.5 ? 'bytes ' : 'bytes:') . '0-' . ($len - 1) . "/$len",
             'FileTruncate: true');
    if ($o{gzip}) {
        gzip(\$delta => \$wire) or die $GzipError;
        push @h, rand() < 0.5 ? 'Content-Encoding: gzip' : 'Content-Transfer-Encoding: gzip';
    }
    push @h, sprintf('X-Pad-%d: %s', $_, 'p' x rnd(500, 3000)) for 1 .. ($o{pad} ? rnd(1, 4) : 0);
    if ($o{chunked}) {
        my ($out, $pos) = ('', 0);
        while ($pos < length $wire) {
            my $n = rnd(1, 40);
            $n = length($wire) - $pos if $pos + $n > length $wire;
            $out .= sprintf("%x\r\n", $n) . substr($wire, $pos, $n) . "\r\n";
            $pos += $n;
        }
        $wire = $out . "0\r\n\r\n";
        push @h, 'Transfer-Encoding: chunked';
    }
    else { push @h, 'Content-Length: ' . length $wire }
    my $head = join("\r\n", @h) . "\r\n\r\n";
    return ($head . $wire, length $head);
}

my (%stats, $bad);
my $files = 4;
my %cur;
for my $f (1 .. $files) {
    $cur{$f} = bytes_of(rnd(1, 200000));
    my $r = $s->put("/dav/f$f", $cur{$f});
    die "PUT f$f: $r->{status}" unless $r->{status} =~ /^20[14]$/;
}
my ($done, $sock, $buf) = (0, undef, '');
for my $case (1 .. $CASES) {
    my $f = rnd(1, $files);
    my $new = edit($cur{$f});
    spew("$tmp/old", $cur{$f});
    spew("$tmp/new", $new);
    unlink "$tmp/sig", "$tmp/delta";   # rdiff refuses to overwrite
    system('rdiff', 'signature', "$tmp/old", "$tmp/sig") == 0 or die 'rdiff signature';
    system('rdiff', 'delta', "$tmp/sig", "$tmp/new", "$tmp/delta") == 0 or die 'rdiff delta';
    my %o = (gzip => rand() < 0.3, chunked => rand() < 0.4, pad => rand() < 0.3);
    my $plan = (qw(header_packet small random))[rnd(0, 2)];
    $stats{join '+', $plan, grep { $o{$_} } sort keys %o}++;
    my ($raw, $hlen) = request("/dav/f$f", slurp("$tmp/delta"), length $new, %o);
    # Several requests on one keep-alive connection, then a new one.
    if (!$sock || rand() < 0.3) { $sock = connect_raw($s->port); $buf = '' }
    my $resp = eval {
        send_pieces($sock, plan_split($raw, $hlen, $plan)) or die "send failed\n";
        read_response($sock, \$buf);
    };
    if (!$resp || $resp->[0] != 204) {
        $bad++;
        diag("case $case ($plan, @{[%o]}): " . ($resp ? "$resp->[0] $resp->[1]" : $@));
        undef $sock;
        next;
    }
    undef $sock if ($resp->[2]{connection} // '') =~ /close/i;
    my $got = $s->get("/dav/f$f")->{content};
    if ($got ne $new) {
        $bad++;
        diag("case $case ($plan, @{[%o]}): the file differs from rdiff patch's output");
    }
    $cur{$f} = $got;
    $done++;
}
is($bad // 0, 0, "$done PATCH-APPLY requests sent in pieces: every file as rdiff makes it");
diag(join ', ', map { "$_ $stats{$_}" } sort keys %stats);
done_testing;
