#!/usr/bin/env perl
# PUT stores exactly the bytes sent, however they arrive on the wire.  A
# raw-socket client (TCP_NODELAY) sends bodies with randomised write
# patterns: the first body bytes in the headers' packet, many small writes
# with pauses, several KB of extra headers, chunked encoding with tiny
# chunks and chunk extensions, gzip bodies cut at random places, pipelined
# requests on one keep-alive connection, a refused body followed by a good
# request on the same connection, and connections dropped mid-body (the old
# version survives, nothing partial shows).  Every stored file is compared
# byte for byte with a GET, and its recorded SHA-1 (PROPFIND) with the SHA-1
# of what was sent.
#   MIRRORDAV_SEED=N        replays one run (the seed is printed)
#   MIRRORDAV_PUT_CASES=N   number of cases (default 420, ~550 PUTs)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha1_hex);
use File::Find ();
use HTTP::Tiny;
use IO::Compress::Gzip qw(gzip $GzipError);
use Time::HiRes qw(sleep time);
use MirrorDAV::Test;
use MirrorDAV::RawClient qw(rnd plan_split send_pieces read_response);

my $seed  = $ENV{MIRRORDAV_SEED} // (time ^ $$) % 1000000;
my $CASES = $ENV{MIRRORDAV_PUT_CASES} // 420;
diag("seed $seed (MIRRORDAV_SEED=$seed replays this run)");
srand($seed);

my $s = MirrorDAV::Test->start_server(
    fsync      => 'Off',
    conf_extra => "<Location /dav>\n  MirrorDAVMaxDecodedSize 4194304\n</Location>");
my $live = $s->live;
is($s->mkcol('/dav/p/')->{status}, 201, 'MKCOL /dav/p/');

# Random bytes to cut bodies from (so that no two blocks of a body match).
my $POOL = join '', map { pack 'N', int rand 4294967296 } 1 .. (1 << 20);

my %want;    # path -> the body stored there (what GET must return)
my %stats;   # pattern -> count
my ($puts, $bad) = (0, 0);
my $http = HTTP::Tiny->new(timeout => 60, keep_alive => 1);


sub body_of_size {
    my ($n) = @_;
    my $off = rnd(0, length($POOL) - $n);
    # Half of the bodies compress (repeated runs), so gzip is exercised.
    return substr($POOL, $off, $n) if rand() < 0.5 || $n < 64;
    my $b = '';
    $b .= substr($POOL, rnd(0, length($POOL) - 512), rnd(1, 512)) x rnd(1, 8)
        while length $b < $n;
    return substr($b, 0, $n);
}

sub random_size {
    my $r = rand();
    return 0              if $r < 0.03;
    return rnd(1, 100)    if $r < 0.15;
    return rnd(1, 4096)   if $r < 0.40;
    return rnd(4096, 65536) if $r < 0.75;
    return rnd(65536, 400_000) if $r < 0.99;
    return rnd(1_000_000, 3_500_000);
}

# --------------------------------------------------------------- requests
# A request: { path, raw => bytes on the wire, body => what must be stored,
# hdr_len => length of the head in raw }.
sub make_request {
    my (%o) = @_;
    my $path = $o{path};
    my $body = $o{body};
    my $wire = $body;
    my @h = ("PUT $path HTTP/1.1", "Host: 127.0.0.1:" . $s->port,
             "User-Agent: put-patterns/$seed");
    if ($o{gzip}) {
        gzip(\$body => \$wire, Minimal => rand() < 0.5) or die $GzipError;
        push @h, 'Content-Encoding: gzip';
    }
    if ($o{pad}) {    # several KB of extra headers
        my $left = $o{pad};
        my $i    = 0;
        while ($left > 0) {
            my $n = $left > 4000 ? rnd(500, 4000) : $left;
            push @h, sprintf('X-Pad-%d: %s', $i++, 'p' x $n);
            $left -= $n;
        }
    }
    if ($o{chunked}) {
        my ($out, $pos) = ('', 0);
        my $max = $o{chunk_max} // 40;
        while ($pos < length $wire) {
            my $n = rnd(1, $max);
            $n = length($wire) - $pos if $pos + $n > length $wire;
            my $ext = rand() < 0.3 ? ';ext' . rnd(0, 99) . '=' . rnd(0, 9999)
                    : rand() < 0.1 ? ';flag' : '';
            $out .= sprintf("%x%s\r\n", $n, $ext)
                  . substr($wire, $pos, $n) . "\r\n";
            $pos += $n;
        }
        $wire = $out . "0\r\n\r\n";
        push @h, 'Transfer-Encoding: chunked';
    }
    else {
        push @h, 'Content-Length: ' . length $wire;
    }
    my $head = join("\r\n", @h) . "\r\n\r\n";
    return { path => $path, raw => $head . $wire, body => $body,
             hdr_len => length $head };
}





# ---------------------------------------------------------------- checking

sub first_diff {
    my ($x, $y) = @_;
    my $n = length($x) < length($y) ? length($x) : length($y);
    for (my $i = 0; $i < $n; $i += 4096) {
        next if substr($x, $i, 4096) eq substr($y, $i, 4096);
        for my $j ($i .. $i + 4095) {
            return $j if substr($x, $j, 1) ne substr($y, $j, 1);
        }
    }
    return $n;
}

sub recorded_sha1 {
    my ($path) = @_;
    my $r = $http->request('PROPFIND', $s->url($path), {
        headers => { Depth => 0, 'Content-Type' => 'application/xml' },
        content => q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>},
    });
    return undef unless $r->{status} == 207;
    return $r->{content} =~ m{<(?:\w+:)?sha1\b[^>]*>([0-9a-f]{40})<} ? $1 : undef;
}

my $verified = 0;

# GET and PROPFIND agree with what was sent (or kept, for aborts).
sub verify {
    my ($path, $why) = @_;
    my $want = $want{$path};
    my $g = $http->get($s->url($path));
    my $ok = 1;
    if (!defined $want) {
        $ok = $g->{status} == 404;
        diag("$why: $path: GET $g->{status}, expected 404") unless $ok;
    }
    elsif ($g->{status} != 200 || $g->{content} ne $want) {
        $ok = 0;
        diag(sprintf("$why: $path: GET %d, %d bytes, expected %d; first "
                     . "difference at byte %d", $g->{status},
                     length $g->{content}, length $want,
                     first_diff($g->{content}, $want)));
    }
    elsif ((recorded_sha1($path) // '-') ne sha1_hex($want)) {
        $ok = 0;
        diag("$why: $path: recorded SHA-1 " . (recorded_sha1($path) // 'none')
             . ", sent " . sha1_hex($want));
    }
    $bad++ unless $ok;
    $verified++;
    return $ok;
}

sub expect_put {
    my ($res, $req, $why) = @_;
    $puts++;
    if ($res->[0] != 201 && $res->[0] != 204) {
        $bad++;
        diag("$why: PUT $req->{path}: status $res->[0]: $res->[1]");
        return;
    }
    $want{ $req->{path} } = $req->{body};
}

# ------------------------------------------------------------------- cases

my @PATHS = map { "/dav/p/f$_.bin" } 0 .. 47;
my @KINDS = qw(header_packet small random bulk);

sub random_request {
    my (%o) = @_;
    my $size = $o{size} // random_size();
    my %r = (path => $o{path} // $PATHS[rnd(0, $#PATHS)],
             body => body_of_size($size));
    my $r = rand();
    $r{gzip}    = 1 if $r < 0.25;
    $r{chunked} = 1 if $r >= 0.15 && $r < 0.45;
    # Tiny chunks for small bodies; larger ones keep big bodies cheap.
    $r{chunk_max} = $size > 65536 ? 8192 : rand() < 0.5 ? 8 : 200
        if $r{chunked};
    $r{pad} = rnd(2000, 12000) if rand() < 0.2;
    return make_request(%r);
}

sub label {
    my ($req, $kind) = @_;
    return join '+', $kind, ($req->{raw} =~ /^Content-Encoding: gzip/m ? 'gzip' : ()),
        ($req->{raw} =~ /^Transfer-Encoding: chunked/m ? 'chunked' : ()),
        ($req->{raw} =~ /^X-Pad-/m ? 'bigheaders' : ());
}

sub case_single {
    my ($n, $size) = @_;
    my $req  = random_request(size => $size);
    my $kind = $KINDS[rnd(0, $#KINDS)];
    my $why  = "case $n " . label($req, $kind) . ' ' . length($req->{body});
    $stats{$kind}++;
    my $sock = MirrorDAV::RawClient::connect_raw($s->port);
    my $buf  = '';
    send_pieces($sock, plan_split($req->{raw}, $req->{hdr_len}, $kind));
    my $res = eval { read_response($sock, \$buf) } // [0, $@];
    close $sock;
    expect_put($res, $req, $why);
    verify($req->{path}, $why);
}

sub case_pipelined {
    my ($n) = @_;
    my $count = rnd(2, 5);
    my @reqs;
    my %seen;
    while (@reqs < $count) {
        my $req = random_request(size => rand() < 0.5 ? rnd(0, 8192) : undef);
        next if $seen{ $req->{path} }++;
        $req->{size} = length $req->{body};
        push @reqs, $req;
    }
    my $raw = join '', map { $_->{raw} } @reqs;
    my $kind = $KINDS[rnd(0, $#KINDS)];
    $stats{"pipelined+$kind"}++;
    my $sock = MirrorDAV::RawClient::connect_raw($s->port);
    send_pieces($sock, plan_split($raw, $reqs[0]{hdr_len}, $kind));
    my $buf = '';
    for my $i (0 .. $#reqs) {
        my $res = eval { read_response($sock, \$buf) } // [0, $@];
        expect_put($res, $reqs[$i], "case $n pipelined $i/" . scalar(@reqs)
                   . ' ' . label($reqs[$i], $kind));
    }
    close $sock;
    verify($_->{path}, "case $n pipelined") for @reqs;
}

# A refused body, then a good request behind it: the refusal is precise
# and the old version stays.  httpd closes the connection after a 400 or
# 413 (ap_status_drops_connection), so the good request then goes on a new
# one; after a 409 the rest of the body is read and dropped and the same
# connection serves the next request.
sub case_refused_then_good {
    my ($n) = @_;
    my $victim = $PATHS[rnd(0, $#PATHS)];
    my ($bad_req, $want_status, $want_text);
    my $r = rand();
    if ($r < 0.4) {
        # A damaged gzip stream (a flipped byte, a CRC that cannot match): 400.
        my $body = body_of_size(rnd(100, 100_000));
        my $gz;
        gzip(\$body => \$gz) or die $GzipError;
        substr($gz, rnd(10, length($gz) - 9), 1) ^= "\x55";
        substr($gz, -8, 4) ^= "\xff\xff\xff\xff";
        $bad_req = make_request(path => $victim, body => '', chunked => rand() < 0.5);
        my $head = substr($bad_req->{raw}, 0, $bad_req->{hdr_len});
        $head =~ s/\r\n\r\n$/\r\nContent-Encoding: gzip\r\n\r\n/;
        $head =~ s/^Content-Length: \d+/Content-Length: ${\ length $gz}/m;
        my $wire = $head =~ /chunked/
            ? sprintf("%x\r\n", length $gz) . $gz . "\r\n0\r\n\r\n" : $gz;
        $bad_req->{raw}     = $head . $wire;
        $bad_req->{hdr_len} = length $head;
        ($want_status, $want_text) = (400, qr/Invalid gzip body/);
    }
    elsif ($r < 0.7) {
        # Decodes past MirrorDAVMaxDecodedSize (4 MiB): 413.
        $bad_req = make_request(path => $victim, body => "\0" x (5 << 20), gzip => 1,
                                chunked => rand() < 0.5, chunk_max => 4096);
        ($want_status, $want_text) = (413, qr/MaxDecodedSize/);
    }
    else {
        # No parent collection: 409, and the connection stays open.
        $victim  = '/dav/nodir/x' . rnd(0, 9) . '.bin';
        $bad_req = make_request(path => $victim, body => body_of_size(rnd(0, 300_000)),
                                gzip => rand() < 0.3, chunked => rand() < 0.5);
        ($want_status, $want_text) = (409, qr/parent/i);
    }
    $stats{"refused-$want_status"}++;
    my $good = random_request(size => rnd(0, 50_000));
    my $kind = $KINDS[rnd(0, $#KINDS)];
    my $sock = MirrorDAV::RawClient::connect_raw($s->port);
    my $keep = $want_status == 409;
    send_pieces($sock, plan_split($bad_req->{raw} . ($keep ? $good->{raw} : ''),
                                  $bad_req->{hdr_len}, $kind));
    my $buf = '';
    my $r1 = eval { read_response($sock, \$buf) } // [0, $@];
    $puts++;
    if ($r1->[0] != $want_status || $r1->[1] !~ $want_text) {
        $bad++;
        diag("case $n refused: status $r1->[0] (want $want_status): $r1->[1]");
    }
    if (!$keep) {
        close $sock;
        $sock = MirrorDAV::RawClient::connect_raw($s->port);
        send_pieces($sock, plan_split($good->{raw}, $good->{hdr_len}, $kind));
    }
    my $r2 = eval { read_response($sock, \$buf) } // [0, $@];
    expect_put($r2, $good, "case $n good after $want_status" . ($keep ? ' (same connection)' : ''));
    close $sock;
    verify($victim, "case $n refused: the old version stays");
    verify($good->{path}, "case $n good after refused");
}

# The connection drops mid-body: the old version stays, nothing partial.
sub case_aborted {
    my ($n) = @_;
    my $req  = random_request(size => rnd(10, 300_000));
    my $cut  = rnd($req->{hdr_len}, length($req->{raw}) - 6);
    my $kind = $KINDS[rnd(0, $#KINDS)];
    $stats{"aborted+$kind"}++;
    my $sock = MirrorDAV::RawClient::connect_raw($s->port);
    send_pieces($sock, plan_split(substr($req->{raw}, 0, $cut), $req->{hdr_len}, $kind));
    sleep 0.002 if rand() < 0.5;
    close $sock;
    $puts++;
    verify($req->{path}, "case $n aborted at $cut of " . length($req->{raw}));
}

my $t0 = time;
for my $n (1 .. $CASES) {
    my $r = rand();
    if    ($r < 0.70) { case_single($n) }
    elsif ($r < 0.85) { case_pipelined($n) }
    elsif ($r < 0.93) { case_aborted($n) }
    else              { case_refused_then_good($n) }
    last if $bad > 20;   # enough to see the pattern
}
# A few MB-sized bodies in the riskiest patterns.
for my $kind (qw(header_packet small)) {
    my $req = random_request(size => rnd(1_000_000, 3_000_000));
    my $sock = MirrorDAV::RawClient::connect_raw($s->port);
    my $buf  = '';
    send_pieces($sock, plan_split($req->{raw}, $req->{hdr_len}, $kind));
    my $res = eval { read_response($sock, \$buf) } // [0, $@];
    close $sock;
    expect_put($res, $req, "large $kind " . label($req, $kind));
    verify($req->{path}, "large $kind");
}
diag(sprintf("%d PUTs (%d cases) in %.1f s; %s", $puts, $CASES, time - $t0,
             join(', ', map { "$_ $stats{$_}" } sort keys %stats)));

cmp_ok($puts, '>=', $CASES, 'all cases ran');
is($bad, 0, "every stored body matches what was sent, byte for byte and by SHA-1 (seed $seed)");
# The last drops are served by now; nothing partial lies anywhere.
sleep 0.3;
verify($_, 'final') for grep { defined $want{$_} } @PATHS;
is($bad, 0, 'every file still holds its last acknowledged body');
my @left;
File::Find::find(sub { push @left, $File::Find::name if /^\.(put|tmp)-/ }, $live);
is_deeply(\@left, [], 'no temporary files left behind');
opendir my $dh, "$live/p" or die;
my @stray = grep { !/^\.\.?$/ && $_ ne '.mirrordav' && !exists $want{"/dav/p/$_"} } readdir $dh;
is_deeply(\@stray, [], 'no file that was never acknowledged');

done_testing;
