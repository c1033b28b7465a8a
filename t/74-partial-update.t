#!/usr/bin/env perl
# The partial-update dialects (SPEC 4b, docs/PARTIAL-UPDATES.md): SabreDAV's
# PATCH with X-Update-Range and PUT with Content-Range.
#  - random byte-range writes (inside, at the end, appending, past the end
#    with a gap of zeros, bytes=S-, bytes=-N, append, Content-Range PUT;
#    plain and gzip bodies), each applied to a local copy and to the
#    server: byte-identical after each step, the content version bumped by
#    one, the size recorded, the SHA-1 property pending or right (never
#    another value), and in the end the local copy's;
#  - the same from a raw-socket client sending each request in pieces
#    (chunked bodies for PUT), several on a keep-alive connection;
#  - every status of both dialects with its cause in the body, and on
#    refusal the file and its sidecar record byte-identical;
#  - OPTIONS: sabredav-partialupdate in DAV, PATCH in Allow;
#  - a snapshot taken before a partial update keeps the old bytes;
#  - X-OC-Mtime is honoured as PUT honours it;
#  - a gzip body past MirrorDAVMaxDecodedSize: 413, nothing changed.
#
#   MIRRORDAV_SEED=N              replays one run (the seed is printed)
#   MIRRORDAV_PARTIAL_CASES=N     random writes (default 300)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use Digest::SHA qw(sha1_hex);
use IO::Compress::Gzip qw(gzip $GzipError);
use Time::HiRes qw(sleep time);
use MirrorDAV::Test qw(slurp spew sha1_file);
use MirrorDAV::RawClient qw(rnd plan_split connect_raw send_pieces read_response);

my $seed  = $ENV{MIRRORDAV_SEED} // (time ^ $$) % 1000000;
my $CASES = $ENV{MIRRORDAV_PARTIAL_CASES} // 300;
diag("seed $seed (MIRRORDAV_SEED=$seed replays this run)");
srand($seed);

my $s     = MirrorDAV::Test->start_server(fsync => 'Off');
my $live  = $s->live;
my $admin = "$ENV{MIRRORDAV_BUILD}/mirrordav";
my $TYPE  = 'application/x-sabredav-partialupdate';
my $POOL  = join '', map { pack 'N', int rand 4294967296 } 1 .. (1 << 16);
sub bytes_of { my $n = shift; my $o = ''; $o .= substr($POOL, rnd(0, length($POOL) - 4096), 4096) while length $o < $n; substr($o, 0, $n) }

# The local model: BODY written at S, zeros between the old end and S.
sub apply_local {
    my ($cur, $S, $body) = @_;
    $$cur .= "\0" x ($S - length $$cur) if $S > length $$cur;
    substr($$cur, $S, length $body) = $body;
}

sub props {
    my ($path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/><M:content-version/><D:getcontentlength/></D:prop></D:propfind>});
    my %p;
    $p{sha1}    = $r->{content} =~ m{<lp\d+:sha1>([0-9a-f]{40})</lp\d+:sha1>} ? $1
                : $r->{content} =~ m{<lp(\d+):sha1 lp\1:pending="true"/>} ? 'pending' : '';
    $p{version} = $1 if $r->{content} =~ m{<lp\d+:content-version>(\d+)</};
    $p{length}  = $1 if $r->{content} =~ m{<lp\d+:getcontentlength>(\d+)</};
    return \%p;
}

sub dump_sidecar { scalar `'$admin' sidecar dump '$live/$_[0]' 2>&1` }

# A SabreDAV PATCH: (status, body, headers).
sub sabre {
    my ($path, $range, $body, %o) = @_;
    my %h = ('Content-Type' => $o{type} // $TYPE);
    $h{'X-Update-Range'} = $range if defined $range;
    if ($o{gzip}) {
        my $z;
        gzip(\$body => \$z, Minimal => 1) or die $GzipError;
        $body = $z;
        $h{'Content-Encoding'} = 'gzip';
    }
    %h = (%h, %{ $o{headers} // {} });
    my $r = $s->request('PATCH', $path, \%h, $body);
    return ($r->{status}, $r->{content}, $r->{headers});
}

# A PUT with Content-Range.
sub cput {
    my ($path, $crange, $body, %o) = @_;
    my %h = ('Content-Range' => $crange);
    if ($o{gzip}) {
        my $z;
        gzip(\$body => \$z, Minimal => 1) or die $GzipError;
        $body = $z;
        $h{'Content-Encoding'} = 'gzip';
    }
    %h = (%h, %{ $o{headers} // {} });
    my $r = $s->request('PUT', $path, \%h, $body);
    return ($r->{status}, $r->{content}, $r->{headers});
}

# A request with BODY sent chunked (one chunk per 3 bytes), on a raw
# socket: { status, content }.
sub raw_chunked {
    my ($method, $path, $headers, $body) = @_;
    my $wire = join("\r\n", "$method $path HTTP/1.1", 'Host: 127.0.0.1:' . $s->port,
                    'Connection: close', 'Transfer-Encoding: chunked', @$headers) . "\r\n\r\n";
    $wire .= sprintf("%x\r\n%s\r\n", length $1, $1) while $body =~ /(.{1,3})/gs;
    $wire .= "0\r\n\r\n";
    my $sock = connect_raw($s->port);
    send_pieces($sock, [$wire, 0]) or die 'send failed';
    my $buf = '';
    my $resp = read_response($sock, \$buf);
    return { status => $resp->[0], content => $resp->[1] };
}

# One random write: (description, S, body, request sub).
sub random_write {
    my ($path, $L) = @_;
    my $n = rnd(1, rand() < 0.7 ? 4096 : 65536);
    my $gz = rand() < 0.3;
    my $kind = (qw(inside at_end appending past_end from suffix append cput cput_past))[rnd(0, 8)];
    $kind = 'appending' if $L == 0 && $kind =~ /^(inside|at_end|suffix)$/;
    my ($S, $hdr);
    if ($kind eq 'inside') {
        $S = rnd(0, $L - 1);
        $n = $L - $S if $n > $L - $S;
        $hdr = "bytes=$S-" . ($S + $n - 1);
    }
    elsif ($kind eq 'at_end') {
        $n = $L if $n > $L;
        $S = $L - $n;
        $hdr = "bytes=$S-" . ($L - 1);
    }
    elsif ($kind eq 'appending') { $S = $L; $hdr = "bytes=$S-" . ($S + $n - 1) }
    elsif ($kind eq 'past_end')  { $S = $L + rnd(1, 70000); $hdr = "bytes=$S-" . ($S + $n - 1) }
    elsif ($kind eq 'from')      { $S = rnd(0, $L + 5000); $hdr = "bytes=$S-" }
    elsif ($kind eq 'suffix')    { my $N = rnd(0, $L); $S = $L - $N; $hdr = "bytes=-$N" }
    elsif ($kind eq 'append')    { $S = $L; $hdr = 'append' }
    else {
        $S = $kind eq 'cput' ? rnd(0, $L) : $L + rnd(1, 70000);
        my $E = $S + $n - 1;
        my $len = rand() < 0.5 ? '*' : ($E + 1 > $L ? $E + 1 : $L) + rnd(0, 3);
        $hdr = "bytes $S-$E/$len";
    }
    my $body = bytes_of($n);
    my $req = $kind =~ /^cput/ ? sub { cput($path, $hdr, $body, gzip => $gz) }
                               : sub { sabre($path, $hdr, $body, gzip => $gz) };
    return ("$kind '$hdr'" . ($gz ? ' gzip' : ''), $S, $body, $req);
}

# ------------------------------------------------------ random writes
my %cur;
{
    my $files = 3;
    for my $f (1 .. $files) {
        $cur{$f} = bytes_of(rnd(0, 300000));
        my $r = $s->put("/dav/r$f.bin", $cur{$f});
        die "PUT r$f: $r->{status}" unless $r->{status} =~ /^20[14]$/;
    }
    my (%kinds, $bad);
    for my $case (1 .. $CASES) {
        my $f = rnd(1, $files);
        my $path = "/dav/r$f.bin";
        my $before = props($path)->{version};
        my ($what, $S, $body, $req) = random_write($path, length $cur{$f});
        (my $k = $what) =~ s/ .*//;
        $kinds{$k}++;
        my ($code, $msg) = $req->();
        if ($code != 204) {
            $bad++;
            diag("case $case, r$f ($what): $code $msg");
            last;
        }
        apply_local(\$cur{$f}, $S, $body);
        my $got = $s->get($path)->{content};
        my $p = props($path);
        if ($got ne $cur{$f}) {
            $bad++;
            diag("case $case, r$f ($what): the file differs from the local copy ("
                 . length($got) . ' bytes, want ' . length($cur{$f}) . ')');
            last;
        }
        if ($p->{sha1} ne 'pending' && $p->{sha1} ne sha1_hex($cur{$f})) {
            $bad++;
            diag("case $case, r$f ($what): the SHA-1 property is '$p->{sha1}', neither pending nor the file's");
            last;
        }
        if (($p->{version} // -1) != ($before // 0) + 1 || ($p->{length} // -1) != length $cur{$f}) {
            $bad++;
            diag("case $case, r$f ($what): content version $p->{version} after $before, length $p->{length}");
            last;
        }
    }
    is($bad // 0, 0, "$CASES random partial writes: the server's files equal the local copies after each");
    diag(join ', ', map { "$_ $kinds{$_}" } sort keys %kinds);
}

# ----------------------------------------- raw-socket client, in pieces
{
    my $path = '/dav/raw.bin';
    my $cur = bytes_of(100000);
    $s->put($path, $cur)->{status} =~ /^20/ or die;
    my ($sock, $buf, $bad, %stats) = (undef, '');
    for my $case (1 .. 40) {
        my $L = length $cur;
        my $n = rnd(1, 30000);
        my $S = rnd(0, $L + 2000);
        my $body = bytes_of($n);
        my $put = rand() < 0.5;
        my $chunked = $put && rand() < 0.5;
        my @h = $put ? ("PUT $path HTTP/1.1", 'Content-Range: bytes ' . "$S-" . ($S + $n - 1) . '/*')
                     : ("PATCH $path HTTP/1.1", "Content-Type: $TYPE", "X-Update-Range: bytes=$S-" . ($S + $n - 1));
        splice @h, 1, 0, 'Host: 127.0.0.1:' . $s->port;
        my $wire = $body;
        if ($chunked) {
            my ($out, $pos) = ('', 0);
            while ($pos < length $wire) {
                my $k = rnd(1, 3000);
                $k = length($wire) - $pos if $pos + $k > length $wire;
                $out .= sprintf("%x\r\n", $k) . substr($wire, $pos, $k) . "\r\n";
                $pos += $k;
            }
            $wire = $out . "0\r\n\r\n";
            push @h, 'Transfer-Encoding: chunked';
        }
        else { push @h, 'Content-Length: ' . length $wire }
        my $head = join("\r\n", @h) . "\r\n\r\n";
        my $plan = (qw(header_packet small random))[rnd(0, 2)];
        $stats{join '+', $put ? 'PUT' : 'PATCH', $plan, $chunked ? 'chunked' : ()}++;
        if (!$sock || rand() < 0.3) { $sock = connect_raw($s->port); $buf = '' }
        my $resp = eval {
            send_pieces($sock, plan_split($head . $wire, length $head, $plan)) or die "send failed\n";
            read_response($sock, \$buf);
        };
        if (!$resp || $resp->[0] != 204) {
            $bad++;
            diag("raw case $case: " . ($resp ? "$resp->[0] $resp->[1]" : $@));
            last;
        }
        undef $sock if ($resp->[2]{connection} // '') =~ /close/i;
        apply_local(\$cur, $S, $body);
        if ($s->get($path)->{content} ne $cur) {
            $bad++;
            diag("raw case $case ($plan): the file differs from the local copy");
            last;
        }
    }
    is($bad // 0, 0, '40 partial writes sent in pieces by a raw-socket client: every result exact');
    diag(join ', ', map { "$_ $stats{$_}" } sort keys %stats);
    $cur{raw} = $cur;
}

# ------------------------------------------------------------ statuses
{
    my $path = '/dav/st.bin';
    my $orig = "0123456789" x 10;
    $s->put($path, $orig)->{status} =~ /^20/ or die;
    my $ref = dump_sidecar('st.bin');
    $s->mkcol('/dav/coll');
    my $refused = sub {
        my ($label, $res, $want, $cause) = @_;
        my ($code, $body) = @$res;
        is($code, $want, "$label: $want");
        like($body, $cause, "$label: the body names the cause");
        is(sha1_file("$live/st.bin"), sha1_hex($orig), "$label: the file is unchanged");
        is(dump_sidecar('st.bin'), $ref, "$label: the sidecar record is unchanged");
    };
    my $gz_bad = "\x1f\x8b\x08\x00" . ('x' x 40);

    # SabreDAV
    $refused->('PATCH without X-Update-Range', [sabre($path, undef, 'abcd')], 400, qr/X-Update-Range is missing/);
    $refused->('PATCH with a malformed X-Update-Range', [sabre($path, 'bytes=x-3', 'abcd')], 400, qr/Malformed X-Update-Range/);
    $refused->('PATCH with two ranges', [sabre($path, 'bytes=0-1,4-5', 'abcd')], 400, qr/Malformed X-Update-Range/);
    $refused->('PATCH with another Content-Type', [sabre($path, 'bytes=0-3', 'abcd', type => 'text/plain')], 415, qr/Unknown Content-Type 'text\/plain'/);
    {
        my $r = $s->raw_request('PATCH', $path, { 'X-Update-Range' => 'bytes=0-3' }, 'abcd');
        $refused->('PATCH without Content-Type', [$r->{status}, $r->{content}], 415, qr/Unknown Content-Type/);
        $r = raw_chunked('PATCH', $path, ['X-Update-Range: append', "Content-Type: $TYPE"], 'abcd');
        $refused->('PATCH with a chunked body (no Content-Length)', [$r->{status}, $r->{content}], 411, qr/Content-Length header .* is required/);
    }
    $refused->('PATCH with S-E longer than the body', [sabre($path, 'bytes=0-9', 'abcd')], 416, qr/not that of the range 0-9 \(10 bytes\)/);
    $refused->('PATCH with S-E shorter than the body', [sabre($path, 'bytes=0-1', 'abcd')], 416, qr/not that of the range 0-1 \(2 bytes\)/);
    $refused->('PATCH with E before S', [sabre($path, 'bytes=5-3', 'abcd')], 416, qr/end offset \(3\) is lower than the start offset \(5\)/);
    $refused->('PATCH bytes=-N with N beyond the file', [sabre($path, 'bytes=-101', 'abcd')], 416, qr/starts before the file: it has 100 bytes/);
    $refused->('PATCH ending beyond the largest file size', [sabre($path, 'bytes=9223372036854775806-', 'abcd')], 416, qr/beyond the largest file size/);
    $refused->('PATCH gzip ending beyond the largest file size', [sabre($path, 'bytes=9223372036854775806-', 'abcd', gzip => 1)], 416, qr/beyond the largest file size/);
    $refused->('PATCH with an offset beyond 2^63', [sabre($path, 'bytes=99999999999999999999-', 'abcd')], 400, qr/Malformed X-Update-Range/);
    $refused->('PATCH gzip whose decoded length is not the range', [sabre($path, 'bytes=0-9', 'abcd', gzip => 1)], 416, qr/body has 4 bytes; the range 0-9 needs 10/);
    $refused->('PATCH gzip longer than the range', [sabre($path, 'bytes=0-1', 'abcd', gzip => 1)], 416, qr/longer than the range \(2 bytes\)/);
    $refused->('PATCH with a corrupt gzip body', [sabre($path, 'bytes=0-3', $gz_bad, headers => { 'Content-Encoding' => 'gzip' })], 400, qr/Invalid gzip body/);
    $refused->('PATCH with another content coding', [sabre($path, 'bytes=0-3', 'abcd', headers => { 'Content-Encoding' => 'br' })], 415, qr/Unsupported content coding 'br'/);
    {
        my ($code, $body) = sabre('/dav/nothere.bin', 'bytes=0-3', 'abcd');
        is($code, 404, 'PATCH of a missing file: 404');
        like($body, qr/does not exist/, 'PATCH of a missing file: the cause');
        ok(!-e "$live/nothere.bin", 'PATCH of a missing file: nothing created');
        ($code, $body) = sabre('/dav/coll/', 'bytes=0-3', 'abcd');
        is($code, 405, 'PATCH of a collection: 405');
        like($body, qr/not collections/, 'PATCH of a collection: the cause');
    }

    # Content-Range PUT
    $refused->('PUT with a malformed Content-Range', [cput($path, 'bytes 3-x/*', 'abcd')], 400, qr/Malformed Content-Range: expected/);
    $refused->('PUT with Content-Range without "bytes"', [cput($path, '0-3/100', 'abcd')], 400, qr/Malformed Content-Range: expected/);
    $refused->('PUT with E before S', [cput($path, 'bytes 5-3/*', 'abcd')], 400, qr/E is before S/);
    $refused->('PUT with LEN not beyond E', [cput($path, 'bytes 0-3/3', 'abcd')], 400, qr/complete length is not beyond E/);
    $refused->('PUT with a body longer than the range', [cput($path, 'bytes 0-2/*', 'abcd')], 400, qr/not that of the range 0-2 \(3 bytes\)/);
    $refused->('PUT with a body shorter than the range', [cput($path, 'bytes 0-9/*', 'abcd')], 400, qr/not that of the range 0-9 \(10 bytes\)/);
    {
        my $r = raw_chunked('PUT', $path, ['Content-Range: bytes 0-9/*'], 'abcd');
        $refused->('PUT with a chunked body shorter than the range', [$r->{status}, $r->{content}], 400, qr/body has 4 bytes; the range 0-9 needs 10/);
        $r = raw_chunked('PUT', $path, ['Content-Range: bytes 0-1/*'], 'abcd');
        $refused->('PUT with a chunked body longer than the range', [$r->{status}, $r->{content}], 400, qr/longer than the range \(2 bytes\)/);
    }
    $refused->('PUT gzip whose decoded length is not the range', [cput($path, 'bytes 0-9/*', 'abcd', gzip => 1)], 400, qr/body has 4 bytes; the range 0-9 needs 10/);
    $refused->('PUT with a corrupt gzip body', [cput($path, 'bytes 0-43/*', $gz_bad, headers => { 'Content-Encoding' => 'gzip' })], 400, qr/Invalid gzip body/);
    $refused->('PUT with a malformed X-OC-Mtime', [cput($path, 'bytes 0-3/*', 'abcd', headers => { 'X-OC-Mtime' => 'yesterday' })], 400, qr/X-OC-Mtime must be Unix seconds/);
    {
        my ($code, $body) = cput('/dav/nothere.bin', 'bytes 0-3/*', 'abcd');
        is($code, 404, 'Content-Range PUT of a missing file: 404');
        like($body, qr/create it with a whole PUT first/, 'Content-Range PUT of a missing file: the cause');
        ok(!-e "$live/nothere.bin", 'Content-Range PUT of a missing file: nothing created');
        ($code, $body) = cput('/dav/coll/', 'bytes 0-3/*', 'abcd');
        is($code, 405, 'Content-Range PUT of a collection: 405');
    }

    # Locks: 423 without the token, 204 with it.
    {
        my $lock = $s->request('LOCK', $path, { Timeout => 'Second-600' },
            q{<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>});
        is($lock->{status}, 200, 'LOCK');
        my ($tok) = ($lock->{headers}{'lock-token'} // '') =~ /<([^>]+)>/;
        $ref = dump_sidecar('st.bin');
        $refused->('PATCH of a locked file without the token', [sabre($path, 'bytes=0-3', 'abcd')], 423, qr/.*/s);
        $refused->('Content-Range PUT of a locked file without the token', [cput($path, 'bytes 0-3/*', 'abcd')], 423, qr/.*/s);
        my ($code, $body) = sabre($path, 'bytes=0-3', 'abcd', headers => { If => "(<$tok>)" });
        is($code, 204, 'PATCH of a locked file with the token: 204') or diag($body);
        ($code, $body) = cput($path, 'bytes 4-7/*', 'efgh', headers => { If => "(<$tok>)" });
        is($code, 204, 'Content-Range PUT of a locked file with the token: 204') or diag($body);
        substr($orig, 0, 8) = 'abcdefgh';
        is(sha1_file("$live/st.bin"), sha1_hex($orig), 'locked file, with the token: both writes in place');
        $s->request('UNLOCK', $path, { 'Lock-Token' => "<$tok>" });
    }
}

# ------------------------------------------------------------- OPTIONS
{
    my $r = $s->request('OPTIONS', '/dav/st.bin');
    like($r->{headers}{dav} // '', qr/(^|,)\s*sabredav-partialupdate\s*(,|$)/, 'OPTIONS: DAV names sabredav-partialupdate');
    like($r->{headers}{allow} // '', qr/\bPATCH\b/, 'OPTIONS: Allow lists PATCH on a file');
    $r = $s->request('OPTIONS', '/dav/');
    unlike($r->{headers}{allow} // '', qr/\bPATCH\b(?!-)/, 'OPTIONS: no PATCH in Allow on a collection');
}

# ------------------------------------------------ X-OC-Mtime, as PUT does
{
    my ($code, $body, $h) = sabre('/dav/st.bin', 'append', 'tail', headers => { 'X-OC-Mtime' => '1500000000' });
    is($code, 204, 'PATCH with X-OC-Mtime: 204') or diag($body);
    is($h->{'x-oc-mtime'}, 'accepted', 'PATCH with X-OC-Mtime: accepted');
    is((stat "$live/st.bin")[9], 1500000000, 'PATCH with X-OC-Mtime: the mtime is set');
    ($code, $body, $h) = cput('/dav/st.bin', 'bytes 0-1/*', 'zz', headers => { 'X-OC-Mtime' => '1600000000.5' });
    is($code, 204, 'Content-Range PUT with X-OC-Mtime: 204') or diag($body);
    is($h->{'x-oc-mtime'}, 'accepted', 'Content-Range PUT with X-OC-Mtime: accepted');
    is((stat "$live/st.bin")[9], 1600000000, 'Content-Range PUT with X-OC-Mtime: the mtime is set');
}

# ------------------------------------------- a snapshot keeps old bytes
{
    my $old = bytes_of(200000);
    $s->put('/dav/snap.bin', $old)->{status} =~ /^20/ or die;
    my $r = $s->mkcol('/snapshots/before');
    is($r->{status}, 201, 'MKCOL /snapshots/before') or diag($r->{content});
    my $new = $old;
    my $p1 = bytes_of(5000);
    my $p2 = bytes_of(3000);
    is((sabre('/dav/snap.bin', 'bytes=1000-5999', $p1))[0], 204, 'PATCH after the snapshot: 204');
    is((cput('/dav/snap.bin', 'bytes 150000-152999/*', $p2))[0], 204, 'Content-Range PUT after the snapshot: 204');
    apply_local(\$new, 1000, $p1);
    apply_local(\$new, 150000, $p2);
    is(sha1_hex($s->get('/dav/snap.bin')->{content}), sha1_hex($new), 'the live file has both writes');
    is(sha1_hex($s->get('/snapshots/before/snap.bin')->{content}), sha1_hex($old), 'the snapshot keeps the old bytes');
    is(sha1_file($s->volume . '/snapshots/before/snap.bin'), sha1_hex($old), 'the snapshot on disk keeps the old bytes');
    $cur{snap} = $new;
    my ($code, $body) = sabre('/snapshots/before/snap.bin', 'bytes=0-3', 'abcd');
    is($code, 403, 'PATCH under /snapshots/: 403');
    like($body, qr/refused under \/snapshots\//, 'PATCH under /snapshots/: the cause');
    ($code, $body) = cput('/snapshots/before/snap.bin', 'bytes 0-3/*', 'abcd');
    is($code, 403, 'Content-Range PUT under /snapshots/: 403');
    is(sha1_file($s->volume . '/snapshots/before/snap.bin'), sha1_hex($old), 'refused writes left the snapshot as it was');
}

# ------------------------------------------ gzip past the decoded limit
{
    my $s2 = MirrorDAV::Test->start_server(fsync => 'Off',
        conf_extra => "<Location /dav>\n  MirrorDAVMaxDecodedSize 10000\n</Location>");
    my $orig = bytes_of(5000);
    $s2->put('/dav/g.bin', $orig)->{status} =~ /^20/ or die;
    my $big = "\0" x 20000;
    my $z;
    gzip(\$big => \$z) or die $GzipError;
    for my $req (['PATCH', { 'Content-Type' => $TYPE, 'X-Update-Range' => 'bytes=0-' }],
                 ['PUT', { 'Content-Range' => 'bytes 0-19999/*' }]) {
        my ($m, $h) = @$req;
        my $r = $s2->request($m, '/dav/g.bin', { %$h, 'Content-Encoding' => 'gzip' }, $z);
        is($r->{status}, 413, "$m gzip past MirrorDAVMaxDecodedSize: 413");
        like($r->{content}, qr/MaxDecodedSize/, "$m gzip past MirrorDAVMaxDecodedSize: the cause");
        is(sha1_file($s2->live . '/g.bin'), sha1_hex($orig), "$m gzip past MirrorDAVMaxDecodedSize: the file is unchanged");
    }
}

# ------------------------------------- the SHA-1, computed in background
{
    my %want = ((map { ("/dav/r$_.bin" => sha1_hex($cur{$_})) } grep { /^\d+$/ } keys %cur),
                '/dav/raw.bin' => sha1_hex($cur{raw}), '/dav/snap.bin' => sha1_hex($cur{snap}));
    my $deadline = time + 30;
    my %got;
    while (time < $deadline) {
        %got = map { ($_ => props($_)->{sha1}) } keys %want;
        last unless grep { $got{$_} eq 'pending' } keys %got;
        sleep 0.2;
    }
    is($got{$_}, $want{$_}, "$_: the SHA-1 property is the local copy's") for sort keys %want;
    opendir my $d, $s->volume . '/state/pending' or die;
    is(scalar(grep { /^p-/ } readdir $d), 0, 'no pending SHA-1 left');
    opendir $d, $s->volume . '/state' or die;
    is(join(' ', grep { /^patch-/ } readdir $d), '', 'no journal file left');
}

done_testing;
