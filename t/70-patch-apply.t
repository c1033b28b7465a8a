#!/usr/bin/env perl
# PATCH-APPLY (SPEC section 5): interop with the real rdiff on random
# cases (whole-file and chunked, plain and gzip bodies, both Content-Range
# spellings), every row of the status table with its cause in the body and
# the file unchanged, OPTIONS, the SHA-1 property (pending or right, never
# wrong), PROPFIND propname, and `mirrordav push`.
#
# MIRRORDAV_PATCH_CASES (default 200) random cases; MIRRORDAV_PATCH_MAX
# (default 4 MiB) their largest size, e.g. 67108864 for up to 64 MiB.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use IO::Compress::Gzip qw(gzip $GzipError);
use Digest::SHA qw(sha1_hex);
use MirrorDAV::Test qw(slurp spew sha1_file);

plan skip_all => 'rdiff is not installed' if system('command -v rdiff >/dev/null 2>&1');

my $CASES = $ENV{MIRRORDAV_PATCH_CASES} // 200;
my $MAX   = $ENV{MIRRORDAV_PATCH_MAX}   // 4 << 20;
my $tmp = tempdir('patch-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $s = MirrorDAV::Test->start_server();
my $live = $s->live;
srand($ENV{MIRRORDAV_SEED} // time);
diag('seed ' . srand()) if 0;

open my $rnd, '<:raw', '/dev/urandom' or die;
sub rbytes { my $n = shift; my $b = ''; read($rnd, $b, $n) if $n > 0; $b }

# PATCH-APPLY with curl: returns (status, body).
sub patch_apply {
    my ($path, $delta_file, $range, %o) = @_;
    my @h = ('-H', 'Expect:');
    push @h, '-H', "Content-Range: $range" if defined $range;
    push @h, '-H', 'FileTruncate: true' if $o{truncate};
    push @h, '-H', "$_" for @{ $o{headers} // [] };
    my $body = $delta_file;
    if ($o{gzip}) {
        $body = "$delta_file.gz";
        gzip($delta_file => $body, Minimal => 1) or die $GzipError;
        push @h, '-H', ($o{gzip} eq 'cte' ? 'Content-Transfer-Encoding: gzip'
                                          : 'Content-Encoding: gzip');
    }
    push @h, '-H', 'Transfer-Encoding: chunked' if $o{chunked};
    my $out = "$tmp/reply";
    unlink $out;
    open my $fh, '-|', 'curl', '-s', '-o', $out, '-w', '%{http_code}', '-X', 'PATCH-APPLY',
        @h, '--data-binary', "\@$body", $s->url($path) or die "curl: $!";
    my $code = <$fh>;
    close $fh;
    return ($code // 0, slurp($out) // '');
}

sub rdiff_delta {
    my ($basis, $new, $delta) = @_;
    unlink "$tmp/sig", $delta;
    system("rdiff", "signature", $basis, "$tmp/sig") == 0 or die "rdiff signature";
    system('rdiff', 'delta', "$tmp/sig", $new, $delta) == 0 or die 'rdiff delta';
}

sub range_hdr {
    my ($s0, $e, $t, $orig) = @_;
    return $orig ? "bytes:$s0-$e/$t" : "bytes $s0-$e/$t";
}

# The SHA-1 property: the hex value, 'pending', or '' (not answered).
sub prop_sha1 {
    my ($path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>});
    return $1 if $r->{content} =~ m{<lp\d+:sha1>([0-9a-f]{40})</lp\d+:sha1>};
    return 'pending' if $r->{content} =~ m{<lp(\d+):sha1 lp\1:pending="true"/>};
    return '';
}

# ------------------------------------------------------------ random edits
sub edit {
    my ($old) = @_;
    my $L = length $old;
    my $kind = int rand 8;
    my $pos = int rand($L + 1);
    my $n = 1 + int rand(1 + ($L >> 3) + 4096);
    if ($kind == 0) { return ('insert', substr($old, 0, $pos) . rbytes($n) . substr($old, $pos)) }
    if ($kind == 1) { return ('delete', substr($old, 0, $pos) . substr($old, $pos + ($n > $L - $pos ? $L - $pos : $n))) }
    if ($kind == 2) {    # move a block elsewhere
        my $len = $n > $L - $pos ? $L - $pos : $n;
        my $blk = substr($old, $pos, $len);
        my $rest = substr($old, 0, $pos) . substr($old, $pos + $len);
        my $to = int rand(length($rest) + 1);
        return ('move', substr($rest, 0, $to) . $blk . substr($rest, $to));
    }
    if ($kind == 3) { return ('append', $old . rbytes($n)) }
    if ($kind == 4) { return ('truncate', substr($old, 0, $pos)) }
    if ($kind == 5) { return ('same', $old) }
    if ($kind == 6) {    # overwrite a few places
        my $new = $old;
        for (1 .. 1 + int rand 4) {
            last unless length $new;
            my $p = int rand length $new;
            my $k = 1 + int rand 2000;
            substr($new, $p, $k > length($new) - $p ? length($new) - $p : $k) = rbytes($k);
        }
        return ('overwrite', $new);
    }
    return ('replace', rbytes(int rand(1 + ($L || 1000))));
}

sub rand_size {
    my $r = rand;
    return 0 if $r < 0.03;
    return int rand 4096 if $r < 0.3;
    return int rand 262144 if $r < 0.8;
    return int rand $MAX;
}

# ------------------------------------------------- whole-file interop cases
my ($ok_cases, %kinds) = (0);
for my $i (1 .. $CASES) {
    my $old = rbytes(rand_size());
    my ($kind, $new) = edit($old);
    $kinds{$kind}++;
    spew("$tmp/old", $old);
    spew("$tmp/new", $new);
    my $put = $s->put('/dav/case.bin', $old);
    unless ($put->{status} =~ /^20[14]$/) { fail("case $i: PUT $put->{status}"); next }
    rdiff_delta("$tmp/old", "$tmp/new", "$tmp/delta");
    unlink "$tmp/rdiff-out";
    system('rdiff', 'patch', "$tmp/old", "$tmp/delta", "$tmp/rdiff-out") == 0 or die 'rdiff patch';
    my $N = length $new;
    my %o = (truncate => 1);
    $o{gzip} = ($i % 8 == 1) ? 'cte' : 'ce' if $i % 4 == 1;
    $o{chunked} = 1 if $i % 3 == 2;
    my ($code, $body) = patch_apply('/dav/case.bin', "$tmp/delta", range_hdr(0, $N - 1, $N, $i % 2), %o);
    my $same = $code == 204 && sha1_file("$live/case.bin") eq sha1_file("$tmp/rdiff-out");
    $ok_cases++ if $same;
    ok($same, "case $i ($kind, " . length($old) . " -> $N bytes"
        . ($o{gzip} ? ", gzip $o{gzip}" : '') . ($o{chunked} ? ', chunked' : '')
        . '): byte-identical to rdiff patch') or diag("status $code: $body");
    # The SHA-1 property is the new file's or pending, never anything else.
    my $h = prop_sha1('/dav/case.bin');
    ok($h eq 'pending' || $h eq sha1_hex($new), "case $i: sha1 property right or pending")
        or diag("got '$h'") if $i % 20 == 0;
}
diag("kinds: " . join(', ', map { "$_ $kinds{$_}" } sort keys %kinds));

# ------------------------------------------- chunked updates (S > 0 ranges)
{
    my $F = rbytes(3 << 20);
    $s->put('/dav/chunks.bin', $F)->{status} =~ /^20/ or die;
    for my $round (1 .. 12) {
        my $L = length $F;
        my $S = int rand($L + 1);
        my $E = $S + int rand(600_000);                 # E+1 may pass L
        my $len = $E - $S + 1;
        # O: the range as it stands, edited, padded or cut to its length.
        my $O = substr($F, $S, $len);
        my (undef, $ed) = edit($O);
        $O = substr($ed . substr($F, 0, $len) . rbytes($len), 0, $len);
        my $trunc = $round % 3 == 0;
        my $want = substr($F, 0, $S) . $O . ($trunc ? '' : length($F) > $E + 1 ? substr($F, $E + 1) : '');
        spew("$tmp/F", $F);
        spew("$tmp/O", $O);
        rdiff_delta("$tmp/F", "$tmp/O", "$tmp/delta");
        my ($code, $body) = patch_apply('/dav/chunks.bin', "$tmp/delta",
            range_hdr($S, $E, length $want, $round % 2), truncate => $trunc,
            gzip => $round % 4 == 1 ? 'ce' : undef, chunked => $round % 5 == 0);
        is($code, 204, "chunked round $round: S=$S E=$E" . ($trunc ? ' truncate' : '')) or diag($body);
        ok(sha1_file("$live/chunks.bin") eq sha1_hex($want), "chunked round $round: F[0,S) + O + F[E+1,L)");
        $F = $want;
    }
}

# -------------------------------------------------------- the status table
{
    my $base = rbytes(200_000);
    spew("$tmp/base", $base);
    $s->put('/dav/t.bin', $base)->{status} =~ /^20/ or die;
    my $want = sha1_hex($base);
    my $new = $base;
    substr($new, 1000, 10) = 'X' x 10;
    spew("$tmp/newt", $new);
    rdiff_delta("$tmp/base", "$tmp/newt", "$tmp/good");
    my $N = length $new;

    my @rows = (
        ['missing Content-Range', 400, qr/Content-Range is missing/, undef],
        ['malformed Content-Range', 400, qr/Malformed Content-Range/, 'bytes 0-x/10'],
        ['Content-Range in another unit', 400, qr/Malformed Content-Range/, 'items 0-9/10'],
        ['S > E', 400, qr/S is beyond E/, 'bytes 10-5/200000'],
        ['S beyond the end of the file', 500, qr/S beyond the end of the file/, 'bytes 300000-300009/300010'],
        ['O of the wrong length', 400, qr/output has \d+ bytes; the range needs/, "bytes 0-" . ($N + 4) . "/" . ($N + 5)],
        ['O longer than the range', 400, qr/output is longer than the range/, "bytes 0-9/10"],
        ['T mismatch', 400, qr/Result size mismatch/, "bytes 0-" . ($N - 1) . "/" . ($N + 1)],
    );
    for my $row (@rows) {
        my ($name, $status, $cause, $range) = @$row;
        my ($code, $body) = patch_apply('/dav/t.bin', "$tmp/good", $range, truncate => 1);
        is($code, $status, "$name: $status");
        like($body, $cause, "$name: the body names the cause");
        is(sha1_file("$live/t.bin"), $want, "$name: the file is unchanged");
    }
    my $range = "bytes 0-" . ($N - 1) . "/$N";
    spew("$tmp/junk", rbytes(5000));
    my $good = slurp("$tmp/good");
    spew("$tmp/trunc", substr($good, 0, length($good) - 7));
    spew("$tmp/trailing", $good . "extra");
    # A delta made against a longer basis: its COPY commands read past the
    # end of the file on the server.
    spew("$tmp/longer", $base . rbytes(100_000));
    rdiff_delta("$tmp/longer", "$tmp/longer", "$tmp/beyond");
    my $gz = '';
    gzip(\$good => \$gz) or die;
    substr($gz, 20, 4) ^= "\xff\xff\xff\xff";
    spew("$tmp/corrupt.gz", $gz);
    for my $row (['malformed delta', "$tmp/junk", qr/Malformed delta/, $range],
                 ['truncated delta', "$tmp/trunc", qr/Malformed delta/, $range],
                 ['data after the delta', "$tmp/trailing", qr/Malformed delta: data after its end/, $range],
                 ['COPY beyond the end of the file', "$tmp/beyond", qr/COPY command .* beyond the end of the file/,
                  'bytes 0-' . (length($base) + 99_999) . '/' . (length($base) + 100_000)]) {
        my ($name, $file, $cause, $r) = @$row;
        my ($code, $body) = patch_apply('/dav/t.bin', $file, $r, truncate => 1);
        is($code, 400, "$name: 400");
        like($body, $cause, "$name: the body names the cause");
        is(sha1_file("$live/t.bin"), $want, "$name: the file is unchanged");
    }
    {
        my ($code, $body) = patch_apply('/dav/t.bin', "$tmp/corrupt.gz", $range, truncate => 1,
                                        headers => ['Content-Encoding: gzip']);
        is($code, 400, 'corrupt gzip: 400');
        like($body, qr/Invalid gzip body/, 'corrupt gzip: the body names the cause');
        is(sha1_file("$live/t.bin"), $want, 'corrupt gzip: the file is unchanged');
        ($code, $body) = patch_apply('/dav/t.bin', "$tmp/good", $range, truncate => 1,
                                     headers => ['Content-Encoding: br']);
        is($code, 415, 'unknown coding: 415');
        is(sha1_file("$live/t.bin"), $want, 'unknown coding: the file is unchanged');
    }
    {
        my ($code, $body) = patch_apply('/dav/nothere.bin', "$tmp/good", $range, truncate => 1);
        is($code, 500, 'missing file: 500');
        like($body, qr/The file does not exist/, 'missing file: the body names the cause');
        ok(!-e "$live/nothere.bin", 'missing file: nothing created');
    }
    {
        $s->mkcol('/dav/coll');
        my ($code, $body) = patch_apply('/dav/coll/', "$tmp/good", $range, truncate => 1);
        is($code, 405, 'collection: 405');
        like($body, qr/not collections/, 'collection: the body names the cause');
    }
    {
        # Bad Content-Length: the request is refused before the body.
        my $r = $s->raw_request('PATCH-APPLY', '/dav/t.bin',
            { 'Content-Range' => $range, 'Content-Length' => '12x' });
        is($r->{status}, 400, 'bad Content-Length: 400');
        is(sha1_file("$live/t.bin"), $want, 'bad Content-Length: the file is unchanged');
    }
    {
        my $lock = $s->request('LOCK', '/dav/t.bin', { Timeout => 'Second-600' },
            q{<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>});
        is($lock->{status}, 200, 'LOCK');
        my ($tok) = ($lock->{headers}{'lock-token'} // '') =~ /<([^>]+)>/;
        my ($code, $body) = patch_apply('/dav/t.bin', "$tmp/good", $range, truncate => 1);
        is($code, 423, 'locked, no token: 423');
        is(sha1_file("$live/t.bin"), $want, 'locked, no token: the file is unchanged');
        ($code, $body) = patch_apply('/dav/t.bin', "$tmp/good", $range, truncate => 1,
                                     headers => ["If: (<$tok>)"]);
        is($code, 204, 'locked, with the token: 204') or diag($body);
        is(sha1_file("$live/t.bin"), sha1_hex($new), 'locked, with the token: patched');
        $s->request('UNLOCK', '/dav/t.bin', { 'Lock-Token' => "<$tok>" });
    }
    {
        # An empty result: "bytes 0--1/0", as the SPEC's shell line gives.
        spew("$tmp/empty", '');
        rdiff_delta("$live/t.bin", "$tmp/empty", "$tmp/todelete");
        my ($code, $body) = patch_apply('/dav/t.bin', "$tmp/todelete", 'bytes 0--1/0', truncate => 1);
        is($code, 204, 'empty result: 204') or diag($body);
        is(-s "$live/t.bin", 0, 'empty result: the file is empty');
    }
}

# ------------------------------------- a file a snapshot shares (nlink 2)
{
    my $old = rbytes(300_000);
    my $new = $old;
    substr($new, 5000, 3000) = rbytes(3000);
    spew("$tmp/s-old", $old);
    spew("$tmp/s-new", $new);
    $s->put('/dav/shared.bin', $old)->{status} =~ /^20/ or die;
    my $snap = $s->volume . '/snapshots/s1';
    mkdir $snap;
    link("$live/shared.bin", "$snap/shared.bin") or die "link: $!";
    my $ino = (stat "$live/shared.bin")[1];
    rdiff_delta("$tmp/s-old", "$tmp/s-new", "$tmp/s-delta");
    my $N = length $new;
    my ($code, $body) = patch_apply('/dav/shared.bin', "$tmp/s-delta", "bytes 0-" . ($N - 1) . "/$N", truncate => 1);
    is($code, 204, 'shared file: 204') or diag($body);
    is(sha1_file("$live/shared.bin"), sha1_hex($new), 'shared file: the live file is the new version');
    is(sha1_file("$snap/shared.bin"), sha1_hex($old), 'shared file: the snapshot keeps the old bytes');
    isnt((stat "$live/shared.bin")[1], $ino, 'shared file: the live name has a new inode');
}

# ----------------------------------------------------------------- OPTIONS
{
    my $r = $s->request('OPTIONS', '/dav/case.bin');
    like($r->{headers}{allow} // '', qr/\bPATCH-APPLY\b/, 'OPTIONS: Allow lists PATCH-APPLY');
}

# ---------------------------------------------------------------- propname
{
    my $r = $s->propfind('/dav/case.bin', 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>});
    like($r->{content}, qr{<lp\d+:sha1/>}, 'propname lists sha1');
    like($r->{content}, qr{<lp\d+:content-version/>}, 'propname lists content-version');
}

# ------------------------------------------------ the SHA-1 after a while
{
    my $deadline = time + 20;
    my $h;
    while (time < $deadline) {
        $h = prop_sha1('/dav/chunks.bin');
        last if $h ne 'pending';
        select undef, undef, undef, 0.2;
    }
    is($h, sha1_file("$live/chunks.bin"), 'the worker recorded the SHA-1 of the patched file');
    opendir my $d, $s->volume . '/state/pending';
    my @left = grep { /^p-/ } readdir $d;
    is(scalar @left, 0, 'no pending SHA-1 left');
}

# ------------------------------------------------------- mirrordav push
my $push = MirrorDAV::Test->build . '/mirrordav';
SKIP: {
    skip 'mirrordav push is not built', 6 unless `$push help 2>&1` =~ /push/;
    my $old = rbytes(5 << 20);
    my $new = $old;
    substr($new, 123_456, 4000) = rbytes(4000);
    $new .= rbytes(77_777);
    spew("$tmp/p-old", $old);
    spew("$tmp/p-new", $new);
    is(system("$push push $tmp/p-old " . $s->url('/dav/pushed.bin') . " >/dev/null"), 0,
       'push without a basis: a whole-file PUT');
    is(sha1_file("$live/pushed.bin"), sha1_hex($old), 'push: the file arrived');
    is(system("$push push --basis $tmp/p-old $tmp/p-new " . $s->url('/dav/pushed.bin') . " >/dev/null"), 0,
       'push --basis: PATCH-APPLY');
    is(sha1_file("$live/pushed.bin"), sha1_hex($new), 'push --basis: the file is the new one');
    my $newer = $new;
    substr($newer, 3 << 20, 100) = rbytes(100);
    spew("$tmp/p-newer", $newer);
    is(system("$push push --chunk 1048576 --gzip --basis $tmp/p-new $tmp/p-newer "
              . $s->url('/dav/pushed.bin') . " >/dev/null"), 0, 'push --chunk --gzip');
    is(sha1_file("$live/pushed.bin"), sha1_hex($newer), 'push --chunk: the file is the newer one');
    isnt(system("$push push --basis $tmp/p-old $tmp/p-new " . $s->url('/dav/nothere.bin') . " >/dev/null 2>&1"), 0,
         'push: a refused request exits non-zero');
}

done_testing();
