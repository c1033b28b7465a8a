#!/usr/bin/env perl
# Integrity headers (docs/DIGESTS.md): OC-Checksum, Content-Digest,
# Repr-Digest and Unencoded-Digest on PUT (plain, gzip, chunked, a raw
# client sending the body in pieces) and PATCH-APPLY.  A matching digest
# stores the file; a mismatching one gets 400 naming the header, the
# algorithm, the expected and the computed value, with the old file and
# its sidecar database byte-identical and no temp file left; an
# unsupported algorithm gets 400 naming it; a malformed header 400.  Then
# what clients read: Repr-Digest on GET/HEAD with Want-Repr-Digest (from
# the record only, absent when the hash is not current), and the
# {http://owncloud.org/ns}checksums property.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use Digest::SHA qw(sha1 sha256 sha512 sha1_hex sha256_hex sha512_hex);
use Digest::MD5 qw(md5 md5_hex);
use MIME::Base64 qw(encode_base64);
use IO::Compress::Gzip qw(gzip $GzipError);
use MirrorDAV::Test qw(slurp spew sha1_file);
use MirrorDAV::RawClient qw(connect_raw send_pieces read_response plan_split);

my $tmp = tempdir('digest-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $s = MirrorDAV::Test->start_server(
    conf_extra => "<Location /dav>\n  MirrorDAVDigest sha1 sha256\n</Location>");
my $live = $s->live;

sub b64 { my $b = encode_base64($_[0], ''); $b }
sub sf  { my ($alg, $raw) = @_; "$alg=:" . b64($raw) . ':' }

# Everything a failed write must leave as it was: the file's bytes and
# inode, and the sidecar database's bytes and inode.
sub state_of {
    my ($name) = @_;
    my @f = stat "$live/$name";
    my @d = stat "$live/.mirrordav/$name.db";
    return join '|', (@f ? "$f[1]:" . sha1_file("$live/$name") : 'nofile'),
        (@d ? "$d[1]:" . sha1_file("$live/.mirrordav/$name.db") : 'nodb');
}

sub temp_files {
    opendir my $d, "$live/.mirrordav" or return 0;
    return scalar grep { /^\.(put|tmp)-/ || /^\.mirrordav-/ } readdir $d;
}

sub curl {
    my ($method, $path, $file, @headers) = @_;
    my @h = map { ('-H', $_) } 'Expect:', @headers;
    my $out = "$tmp/reply";
    unlink $out;
    open my $fh, '-|', 'curl', '-s', '-o', $out, '-w', '%{http_code}', '-X', $method,
        '--data-binary', "\@$file", @h, $s->url($path) or die "curl: $!";
    my $code = <$fh>;
    close $fh;
    return ($code // 0, slurp($out) // '');
}

# The old version: a PUT with no digest headers, so that every check below
# starts from a file and a record.
my $n = 0;
sub fresh_old {
    my ($name) = @_;
    my $r = $s->put("/dav/$name", "old contents of $name " x 50);
    die "setup PUT: $r->{status}" unless $r->{status} =~ /^20[14]$/;
}

my $body = join('', map { chr(($_ * 7 + 3) % 256) } 1 .. 300_000);   # > one 256 KiB buffer
my $bfile = "$tmp/body";
spew($bfile, $body);

my %raw = (
    SHA1 => sha1($body), MD5 => md5($body), SHA256 => sha256($body),
    'sha-256' => sha256($body), 'sha-512' => sha512($body));
my @cases;
for my $alg (qw(SHA1 MD5 SHA256)) {
    push @cases, ['OC-Checksum', $alg, "$alg:" . unpack('H*', $raw{$alg}),
                  "$alg:" . unpack('H*', $raw{$alg} ^ ("\x01" x length $raw{$alg}))];
}
# ownCloud's own clients write upper case hex; accepted.
push @cases, ['OC-Checksum', 'SHA1', 'SHA1:' . uc(unpack('H*', $raw{SHA1})),
              'SHA1:' . uc(sha1_hex('x'))];
for my $h (qw(Content-Digest Repr-Digest Unencoded-Digest)) {
    for my $alg (qw(sha-256 sha-512)) {
        my $bad = $raw{$alg};
        substr($bad, 5, 1) = chr(ord(substr($bad, 5, 1)) ^ 0x80);
        push @cases, [$h, $alg, sf($alg, $raw{$alg}), sf($alg, $bad)];
    }
}

for my $c (@cases) {
    my ($h, $alg, $good, $bad) = @$c;
    my $name = 'f' . $n++;
    fresh_old($name);
    my $before = state_of($name);
    my ($code, $reply) = curl('PUT', "/dav/$name", $bfile, "$h: $bad");
    is($code, 400, "$h $alg mismatch: 400");
    like($reply, qr/\Q$h\E mismatch: \Q$alg\E expected/, "$h $alg: the body names header and algorithm");
    my ($exp_v) = $bad =~ /^[^=:]+[=:](.*)$/;
    $exp_v = lc $exp_v if $h eq 'OC-Checksum';
    like($reply, qr/expected \Q$exp_v\E, computed \S+/, "$h $alg: expected and computed values in the body")
        or diag $reply;
    is(state_of($name), $before, "$h $alg mismatch: old file and sidecar byte-identical");
    is(temp_files(), 0, "$h $alg mismatch: no temp file left");
    ($code) = curl('PUT', "/dav/$name", $bfile, "$h: $good");
    is($code, 204, "$h $alg match: 204");
    is(sha1_file("$live/$name"), sha1_hex($body), "$h $alg match: file stored");
    ($code) = curl('PUT', "/dav/new-$name", $bfile, "$h: $good");
    is($code, 201, "$h $alg match on a new file: 201");
}

# A name too long for NAME.db has its sidecar at <sha1 of the name>.hdb:
# the same guarantees.
{
    my $long = 'L' x 250 . '.bin';
    my $db = "$live/.mirrordav/" . sha1_hex($long) . '.hdb';
    fresh_old($long);
    ok(-f $db, 'a long name has its .hdb sidecar');
    my $before = sha1_file($db) . (stat $db)[1] . sha1_file("$live/$long");
    my ($code, $reply) = curl('PUT', "/dav/$long", $bfile, 'Content-Digest: ' . sf('sha-256', sha256('no')));
    is($code, 400, 'long name, Content-Digest wrong: 400');
    is(sha1_file($db) . (stat $db)[1] . sha1_file("$live/$long"), $before, '... the file and its .hdb byte-identical');
    is(temp_files(), 0, '... no temp file');
    ($code) = curl('PUT', "/dav/$long", $bfile, 'Content-Digest: ' . sf('sha-256', sha256($body)));
    is($code, 204, 'long name, Content-Digest right: 204');
}

# Several OC-Checksum types at once: every one is checked.
{
    fresh_old('multi');
    my $before = state_of('multi');
    my $good = 'SHA1:' . sha1_hex($body) . ' MD5:' . md5_hex($body);
    my ($code) = curl('PUT', '/dav/multi', $bfile, "OC-Checksum: $good");
    is($code, 204, 'OC-Checksum SHA1 and MD5 both right: 204');
    $before = state_of('multi');
    ($code, my $reply) = curl('PUT', '/dav/multi', $bfile,
        'OC-Checksum: SHA1:' . sha1_hex($body) . ' MD5:' . md5_hex('other'));
    is($code, 400, 'OC-Checksum with the MD5 wrong: 400');
    like($reply, qr/OC-Checksum mismatch: MD5/, '... naming MD5');
    is(state_of('multi'), $before, '... nothing changed');
    # Two fields at once, one wrong.
    ($code, $reply) = curl('PUT', '/dav/multi', $bfile, 'OC-Checksum: ' . $good,
        'Content-Digest: ' . sf('sha-256', sha256('other')));
    is($code, 400, 'OC-Checksum right, Content-Digest wrong: 400');
    like($reply, qr/Content-Digest mismatch: sha-256/, '... naming Content-Digest');
    is(state_of('multi'), $before, '... nothing changed');
    # A dictionary with both algorithms, parameters, spacing.
    ($code) = curl('PUT', '/dav/multi', $bfile,
        'Content-Digest: ' . sf('sha-512', sha512($body)) . ';x=1 ,  ' . sf('sha-256', sha256($body)));
    is($code, 204, 'Content-Digest with sha-512 and sha-256, a parameter: 204');
}

# Unsupported algorithms: 400 naming them, never a silent pass.
for my $c (['OC-Checksum', 'ADLER32:0a1b2c3d', 'ADLER32'],
           ['OC-Checksum', 'CRC32:00000000', 'CRC32'],
           ['Content-Digest', sf('md5', md5($body)), 'md5'],
           ['Repr-Digest', sf('sha', sha1($body)), 'sha'],
           ['Unencoded-Digest', sf('crc32c', 'abcd'), 'crc32c'],
           ['Content-Digest', sf('sha-256', sha256($body)) . ', ' . sf('blake3', 'x' x 32), 'blake3']) {
    my ($h, $v, $alg) = @$c;
    fresh_old('unsup');
    my $before = state_of('unsup');
    my ($code, $reply) = curl('PUT', '/dav/unsup', $bfile, "$h: $v");
    is($code, 400, "$h with $alg: 400");
    like($reply, qr/\Q$h\E: algorithm \Q$alg\E is not supported/, "... the body names $alg");
    is(state_of('unsup'), $before, "... nothing changed");
}

# Malformed headers: 400 naming the header.
for my $c (['Content-Digest', 'sha-256=abc'],
           ['Content-Digest', 'sha-256=:' . b64('short') . ':'],
           ['Content-Digest', 'sha-256=:!!!!:'],
           ['Repr-Digest', sf('sha-256', sha256($body)) . ','],
           ['Repr-Digest', 'SHA-256=:' . b64(sha256($body)) . ':'],
           ['Unencoded-Digest', ''],
           ['Unencoded-Digest', 'sha-256'],
           ['OC-Checksum', 'SHA1'],
           ['OC-Checksum', 'SHA1:' . ('z' x 40)],
           ['OC-Checksum', 'SHA1:abc'],
           ['OC-Checksum', ':' . sha1_hex($body)]) {
    my ($h, $v) = @$c;
    fresh_old('malformed');
    my $before = state_of('malformed');
    # curl sends "Name;" as a header with an empty value.
    my ($code, $reply) = curl('PUT', '/dav/malformed', $bfile, $v eq '' ? "$h;" : "$h: $v");
    is($code, 400, "malformed $h '$v': 400");
    like($reply, qr/\Q$h\E: /, '... naming the header') or diag $reply;
    is(state_of('malformed'), $before, '... nothing changed');
}

# gzip bodies: Content-Digest and Repr-Digest over the gzip bytes,
# Unencoded-Digest and OC-Checksum over the decoded bytes.
{
    my $gz;
    gzip(\$body => \$gz, Minimal => 1) or die $GzipError;
    my $gzfile = "$tmp/body.gz";
    spew($gzfile, $gz);
    my @ok = (['Repr-Digest', sf('sha-256', sha256($gz))],
              ['Content-Digest', sf('sha-512', sha512($gz))],
              ['Unencoded-Digest', sf('sha-256', sha256($body))],
              ['OC-Checksum', 'SHA1:' . sha1_hex($body)]);
    my @bad = (['Repr-Digest', sf('sha-256', sha256($body))],
               ['Content-Digest', sf('sha-256', sha256($body))],
               ['Unencoded-Digest', sf('sha-512', sha512($gz))],
               ['OC-Checksum', 'SHA1:' . sha1_hex($gz)]);
    for my $cte ('Content-Encoding: gzip', 'Content-Transfer-Encoding: gzip') {
        for my $c (@ok) {
            fresh_old('gz');
            my ($code) = curl('PUT', '/dav/gz', $gzfile, $cte, "$c->[0]: $c->[1]");
            is($code, 204, "gzip ($cte), $c->[0] over the right bytes: 204");
            is(sha1_file("$live/gz"), sha1_hex($body), '... decoded file stored');
        }
        for my $c (@bad) {
            fresh_old('gz');
            my $before = state_of('gz');
            my ($code, $reply) = curl('PUT', '/dav/gz', $gzfile, $cte, "$c->[0]: $c->[1]");
            is($code, 400, "gzip ($cte), $c->[0] over the other bytes: 400");
            like($reply, qr/\Q$c->[0]\E mismatch/, '... naming it');
            is(state_of('gz'), $before, '... nothing changed');
            is(temp_files(), 0, '... no temp file');
        }
    }
    # All four at once, right.
    fresh_old('gz');
    my ($code) = curl('PUT', '/dav/gz', $gzfile, 'Content-Encoding: gzip', map { "$_->[0]: $_->[1]" } @ok);
    is($code, 204, 'gzip with all four digests right: 204');
}

# Chunked bodies (curl sends the file in chunks; several MiB, so the
# hashing threads run).
{
    my $big = "$tmp/big";
    system("head -c 5000000 /dev/urandom > $big") == 0 or die;
    my $data = slurp($big);
    my $gz;
    gzip(\$data => \$gz, Minimal => 1) or die $GzipError;
    spew("$big.gz", $gz);
    for my $c (['Content-Digest', sf('sha-256', sha256($data)), sf('sha-256', sha256("$data."))],
               ['OC-Checksum', 'SHA256:' . sha256_hex($data), 'SHA256:' . sha256_hex('.')]) {
        fresh_old('chunked');
        my $before = state_of('chunked');
        my ($code) = curl('PUT', '/dav/chunked', $big, 'Transfer-Encoding: chunked', "$c->[0]: $c->[2]");
        is($code, 400, "chunked, $c->[0] wrong: 400");
        is(state_of('chunked'), $before, '... nothing changed');
        ($code) = curl('PUT', '/dav/chunked', $big, 'Transfer-Encoding: chunked', "$c->[0]: $c->[1]");
        is($code, 204, "chunked, $c->[0] right: 204");
        is(sha1_file("$live/chunked"), sha1_hex($data), '... stored');
    }
    fresh_old('chunked');
    my $before = state_of('chunked');
    my ($code) = curl('PUT', '/dav/chunked', "$big.gz", 'Transfer-Encoding: chunked',
        'Content-Encoding: gzip', 'Unencoded-Digest: ' . sf('sha-256', sha256($gz)));
    is($code, 400, 'chunked gzip, Unencoded-Digest over the gzip bytes: 400');
    is(state_of('chunked'), $before, '... nothing changed');
    ($code) = curl('PUT', '/dav/chunked', "$big.gz", 'Transfer-Encoding: chunked',
        'Content-Encoding: gzip', 'Unencoded-Digest: ' . sf('sha-256', sha256($data)),
        'Repr-Digest: ' . sf('sha-512', sha512($gz)));
    is($code, 204, 'chunked gzip, Unencoded-Digest and Repr-Digest right: 204');
    is(sha1_file("$live/chunked"), sha1_hex($data), '... stored');
}

# A raw-socket client sending the body in pieces (small writes, pauses).
{
    my $data = $body x 3;
    for my $kind (qw(header_packet small random)) {
        for my $right (0, 1) {
            fresh_old('raw');
            my $before = state_of('raw');
            my $d = $right ? sha256($data) : sha256("x$data");
            my $head = "PUT /dav/raw HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                . length($data) . "\r\nContent-Digest: " . sf('sha-256', $d) . "\r\n\r\n";
            my $sock = connect_raw($s->port);
            send_pieces($sock, plan_split($head . $data, length $head, $kind));
            my $buf = '';
            my $r = read_response($sock, \$buf);
            close $sock;
            if ($right) {
                is($r->[0], 204, "raw client ($kind), right digest: 204");
                is(sha1_file("$live/raw"), sha1_hex($data), '... stored');
            }
            else {
                is($r->[0], 400, "raw client ($kind), wrong digest: 400");
                is(state_of('raw'), $before, '... nothing changed');
            }
        }
    }
}

# ---------------------------------------------------------------- PATCH-APPLY
# Content-Digest over the body as sent, Unencoded-Digest over the decoded
# delta, Repr-Digest and OC-Checksum over the file the patch produces.
SKIP: {
    skip 'rdiff is not installed', 1 if system('command -v rdiff >/dev/null 2>&1');
    my $old = join('', map { chr(($_ * 13 + 1) % 251) } 1 .. 700_000);
    sub pa {
        my ($delta, $range, @headers) = @_;
        my %o = map { $_ => 1 } grep { /^(gzip|truncate)$/ } @headers;
        @headers = grep { !/^(gzip|truncate)$/ } @headers;
        push @headers, 'FileTruncate: true' if $o{truncate};
        my $bodyf = $delta;
        if ($o{gzip}) {
            $bodyf = "$delta.gz";
            gzip($delta => $bodyf, Minimal => 1) or die $GzipError;
            push @headers, 'Content-Encoding: gzip';
        }
        return curl('PATCH-APPLY', '/dav/pa', $bodyf, "Content-Range: $range", @headers);
    }
    # (name, new contents, S, E1, truncate): O = new[S, E1).
    my $mid = $old;
    substr($mid, 300_000, 5000) = 'M' x 5000;
    my $short = substr($old, 0, 200_000) . ('S' x 1000);
    my $long = $old . ('L' x 70_000);
    my @shapes = (['middle', $mid, 290_000, 320_000, 0],
                  ['truncating', $short, 150_000, length $short, 1],
                  ['appending', $long, 650_000, length $long, 0],
                  ['whole', $mid, 0, length $mid, 0]);
    for my $sh (@shapes) {
        my ($what, $new, $S, $E1, $trunc) = @$sh;
        spew("$tmp/basis", $old);
        spew("$tmp/o", substr($new, $S, $E1 - $S));
        unlink "$tmp/sig", "$tmp/delta";
        system('rdiff', 'signature', "$tmp/basis", "$tmp/sig") == 0 or die;
        system('rdiff', 'delta', "$tmp/sig", "$tmp/o", "$tmp/delta") == 0 or die;
        my $delta = slurp("$tmp/delta");
        my $gzd;
        gzip(\$delta => \$gzd, Minimal => 1) or die $GzipError;
        my $range = "bytes $S-" . ($E1 - 1) . '/' . length($new);
        my @extra = $trunc ? ('truncate') : ();
        my @cases = (
            ['Content-Digest', 'sha-256', [], sf('sha-256', sha256($delta)), sf('sha-256', sha256($new))],
            ['Content-Digest', 'sha-512', ['gzip'], sf('sha-512', sha512($gzd)), sf('sha-512', sha512($delta))],
            ['Unencoded-Digest', 'sha-256', ['gzip'], sf('sha-256', sha256($delta)), sf('sha-256', sha256($gzd))],
            ['Unencoded-Digest', 'sha-512', [], sf('sha-512', sha512($delta)), sf('sha-512', sha512($new))],
            ['Repr-Digest', 'sha-256', [], sf('sha-256', sha256($new)), sf('sha-256', sha256($delta))],
            ['Repr-Digest', 'sha-512', ['gzip'], sf('sha-512', sha512($new)), sf('sha-512', sha512($old))],
            ['OC-Checksum', 'SHA1', [], 'SHA1:' . sha1_hex($new), 'SHA1:' . sha1_hex($old)],
            ['OC-Checksum', 'MD5', [], 'MD5:' . md5_hex($new), 'MD5:' . md5_hex($delta)],
        );
        for my $c (@cases) {
            my ($h, $alg, $opts, $good, $bad) = @$c;
            my $r = $s->put('/dav/pa', $old);
            die "PUT: $r->{status}" unless $r->{status} =~ /^20[14]$/;
            my $before = state_of('pa');
            my ($code, $reply) = pa("$tmp/delta", $range, @$opts, @extra, "$h: $bad");
            is($code, 400, "PATCH-APPLY $what (@$opts), $h $alg wrong: 400");
            like($reply, qr/\Q$h\E mismatch: \Q$alg\E expected/, '... naming header and algorithm');
            is(state_of('pa'), $before, '... old file and sidecar byte-identical');
            is(temp_files(), 0, '... no temp file');
            ($code, $reply) = pa("$tmp/delta", $range, @$opts, @extra, "$h: $good");
            is($code, 204, "PATCH-APPLY $what (@$opts), $h $alg right: 204") or diag $reply;
            is(sha1_file("$live/pa"), sha1_hex($new), '... the patched file');
        }
    }
    # Just after a PATCH-APPLY the record's hashes are pending or new,
    # never the old ones; the worker then computes the SHA-1 and, as the
    # record had one, the SHA-256: Repr-Digest gives the new ones.
    my $new1 = 'sha=:' . b64(sha1($mid)) . ':';
    my $new256 = 'sha-256=:' . b64(sha256($mid)) . ':';
    my $r = $s->request('GET', '/dav/pa', { 'Want-Repr-Digest' => 'sha-256=5, sha=5' });
    my $got = $r->{headers}{'repr-digest'};
    ok(!defined $got || $got eq "$new256, $new1",
       'GET right after PATCH-APPLY: no Repr-Digest, or the new digests') or diag $got;
    my $o = propfind_checksums('/dav/pa')->{content};
    ok($o =~ m{<lp\d+:checksums/>} || $o =~ m{SHA1:\Q${\sha1_hex($mid)}\E SHA256:\Q${\sha256_hex($mid)}\E</lp},
       '... oc:checksums empty or the new ones') or diag $o;
    for (1 .. 100) {
        $got = $s->request('HEAD', '/dav/pa', { 'Want-Repr-Digest' => 'sha-256=5, sha=5' })->{headers}{'repr-digest'};
        last if defined $got;
        select undef, undef, undef, 0.1;
    }
    is($got, "$new256, $new1", 'once the worker has run: the new SHA-256 and SHA-1');
}


# ------------------------------------------------ SabreDAV PATCH, Content-Range PUT
# The partial-update dialects take the same headers as PATCH-APPLY: the
# literal body is the range's new bytes, so Content-Digest and
# Unencoded-Digest cover it (as sent, and decoded), Repr-Digest and
# OC-Checksum the resulting file.  A header is never ignored.
{
    my $old = join('', map { chr(($_ * 11 + 5) % 253) } 1 .. 400_000);
    my $piece = 'P' x 70_000;
    my $gzp;
    gzip(\$piece => \$gzp, Minimal => 1) or die $GzipError;
    spew("$tmp/piece", $piece);
    spew("$tmp/piece.gz", $gzp);
    for my $dialect (['sabredav', 100_000], ['content-range', 100_000], ['sabredav-append', -1]) {
        my ($kind, $S) = @$dialect;
        my $new = $old;
        if ($S < 0) { $new .= $piece } else { substr($new, $S, length $piece) = $piece }
        my @how = $kind =~ /^sabredav/
            ? ('PATCH', 'Content-Type: application/x-sabredav-partialupdate',
               'X-Update-Range: ' . ($S < 0 ? 'append' : "bytes=$S-" . ($S + length($piece) - 1)))
            : ('PUT', "Content-Range: bytes $S-" . ($S + length($piece) - 1) . '/*');
        my ($method, @rh) = @how;
        my @cases = (
            ['Content-Digest', 'sha-256', 0, sf('sha-256', sha256($piece)), sf('sha-256', sha256($new))],
            ['Content-Digest', 'sha-512', 1, sf('sha-512', sha512($gzp)), sf('sha-512', sha512($piece))],
            ['Unencoded-Digest', 'sha-256', 1, sf('sha-256', sha256($piece)), sf('sha-256', sha256($gzp))],
            ['Repr-Digest', 'sha-256', 0, sf('sha-256', sha256($new)), sf('sha-256', sha256($piece))],
            ['OC-Checksum', 'SHA1', 1, 'SHA1:' . sha1_hex($new), 'SHA1:' . sha1_hex($old)],
        );
        for my $c (@cases) {
            my ($h, $alg, $gz, $good, $bad) = @$c;
            my $r = $s->put('/dav/part', $old);
            die "PUT: $r->{status}" unless $r->{status} =~ /^20[14]$/;
            my $before = state_of('part');
            my @body = $gz ? ("$tmp/piece.gz", 'Content-Encoding: gzip') : ("$tmp/piece");
            my ($code, $reply) = curl($method, '/dav/part', $body[0], @rh, @body[1 .. $#body], "$h: $bad");
            is($code, 400, "$kind (gzip $gz), $h $alg wrong: 400");
            like($reply, qr/\Q$h\E mismatch: \Q$alg\E expected/, '... naming header and algorithm');
            is(state_of('part'), $before, '... old file and sidecar byte-identical');
            is(temp_files(), 0, '... no temp file');
            ($code, $reply) = curl($method, '/dav/part', $body[0], @rh, @body[1 .. $#body], "$h: $good");
            like($code, qr/^20[04]$/, "$kind (gzip $gz), $h $alg right: 2xx") or diag $reply;
            is(sha1_file("$live/part"), sha1_hex($new), '... the updated file');
        }
        my $r = $s->put('/dav/part', $old);
        my $before = state_of('part');
        my ($code, $reply) = curl($method, '/dav/part', "$tmp/piece", @rh, 'Repr-Digest: crc32c=:AAAAAA==:');
        is($code, 400, "$kind with an unsupported algorithm: 400");
        like($reply, qr/crc32c/, '... naming it');
        is(state_of('part'), $before, '... nothing changed');
    }
}

# ---------------------------------------------------------------- reading

sub propfind_checksums {
    my ($path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop><oc:checksums/></D:prop></D:propfind>});
    return $r;
}

{
    my $r = $s->put('/dav/read', $body);
    is($r->{status}, 201, 'PUT for reading');
    my $want256 = 'sha-256=:' . b64(sha256($body)) . ':';
    my $want1   = 'sha=:' . b64(sha1($body)) . ':';
    for my $m (qw(GET HEAD)) {
        $r = $s->request($m, '/dav/read', { 'Want-Repr-Digest' => 'sha-256=5' });
        is($r->{headers}{'repr-digest'}, $want256, "$m with Want-Repr-Digest sha-256: Repr-Digest from the record");
        $r = $s->request($m, '/dav/read');
        ok(!exists $r->{headers}{'repr-digest'}, "$m without Want-Repr-Digest: no Repr-Digest");
        $r = $s->request($m, '/dav/read', { 'Want-Repr-Digest' => 'sha=3, sha-256=0' });
        is($r->{headers}{'repr-digest'}, $want1, "$m asking for sha only: the SHA-1");
        $r = $s->request($m, '/dav/read', { 'Want-Repr-Digest' => 'sha-512=10' });
        is($r->{headers}{'repr-digest'}, $want256, "$m asking for sha-512: sha-256, the one recorded");
        $r = $s->request($m, '/dav/read', { 'Want-Repr-Digest' => 'sha-256=x' });
        ok(!exists $r->{headers}{'repr-digest'}, "$m with a malformed preference: ignored");
    }
    $r = $s->request('GET', '/dav/read', { 'Want-Repr-Digest' => 'sha-256=1', Range => 'bytes=0-9' });
    is($r->{status}, 206, 'a range GET');
    is($r->{headers}{'repr-digest'}, $want256, '... carries the digest of the whole representation');

    $r = propfind_checksums('/dav/read');
    like($r->{content}, qr{<lp\d+:checksums[^>]*><lp\d+:checksum>SHA1:\Q${\sha1_hex($body)}\E SHA256:\Q${\sha256_hex($body)}\E</lp\d+:checksum></lp\d+:checksums>},
         'oc:checksums: SHA1 and SHA256 as ownCloud writes them') or diag $r->{content};
    like($r->{content}, qr{xmlns:lp\d+="http://owncloud.org/ns"}, '... in the ownCloud namespace');
    $r = propfind_checksums('/dav/');
    like($r->{content}, qr{checksums.*404 Not Found}s, 'oc:checksums on a collection: 404');
    $r = $s->propfind('/dav/read', 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>});
    like($r->{content}, qr{<lp\d+:checksums/>}, 'propname lists oc:checksums');
    $r = $s->propfind('/dav/read', 0);
    unlike($r->{content}, qr{checksums}, 'allprop leaves it out, as it does the SHA-1 (a sidecar read per member)');

    # COPY and MOVE carry the record, SHA-256 included.
    $r = $s->request('COPY', '/dav/read', { Destination => $s->url('/dav/read-copy') });
    is($r->{status}, 201, 'COPY');
    $r = $s->request('MOVE', '/dav/read-copy', { Destination => $s->url('/dav/read-moved') });
    is($r->{status}, 201, 'MOVE');
    $r = $s->request('HEAD', '/dav/read-moved', { 'Want-Repr-Digest' => 'sha-256=5' });
    is($r->{headers}{'repr-digest'}, $want256, 'after COPY and MOVE: the SHA-256 still served');

    # Snapshots carry it too, and so does a restore (COPY out of one).
    $r = $s->mkcol('/snapshots/s1');
    is($r->{status}, 201, 'MKCOL /snapshots/s1');
    $r = $s->request('HEAD', '/snapshots/s1/read-moved', { 'Want-Repr-Digest' => 'sha-256=5' });
    is($r->{headers}{'repr-digest'}, $want256, 'in the snapshot: the SHA-256 served');
    $r = $s->request('COPY', '/snapshots/s1/read-moved', { Destination => $s->url('/dav/restored') });
    is($r->{status}, 201, 'restore by COPY out of the snapshot');
    $r = $s->request('HEAD', '/dav/restored', { 'Want-Repr-Digest' => 'sha-256=5' });
    is($r->{headers}{'repr-digest'}, $want256, '... the SHA-256 still served');

    # Changed behind the server's back (same size and mtime: a direct
    # write): the record no longer describes the bytes, so nothing is
    # answered.
    my @st = stat "$live/read";
    open my $fh, '+<:raw', "$live/read" or die;
    print $fh 'Z';
    close $fh;
    utime $st[8], $st[9], "$live/read";
    $r = $s->request('GET', '/dav/read', { 'Want-Repr-Digest' => 'sha-256=5, sha=5' });
    ok(!exists $r->{headers}{'repr-digest'}, 'after a direct write: no Repr-Digest (the record is not current)');
    $r = propfind_checksums('/dav/read');
    like($r->{content}, qr{<lp\d+:checksums/>}, '... and oc:checksums empty');
}

# Without MirrorDAVDigest sha256 only the SHA-1 is recorded: sha-256 is
# never answered, SHA-1 only when asked by name.
{
    my $d = MirrorDAV::Test->start_server();
    my $r = $d->put('/dav/one', $body);
    $r = $d->request('GET', '/dav/one', { 'Want-Repr-Digest' => 'sha-256=5' });
    ok(!exists $r->{headers}{'repr-digest'}, 'default server, sha-256 wanted: no Repr-Digest (none recorded)');
    $r = $d->request('HEAD', '/dav/one', { 'Want-Repr-Digest' => 'sha-256=5, sha=1' });
    is($r->{headers}{'repr-digest'}, 'sha=:' . b64(sha1($body)) . ':', 'default server, sha wanted too: the SHA-1');
    $r = $d->propfind('/dav/one', 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop><oc:checksums/></D:prop></D:propfind>});
    like($r->{content}, qr{<lp\d+:checksum>SHA1:\Q${\sha1_hex($body)}\E</lp\d+:checksum>}, 'default server: oc:checksums SHA1 only');
    $d->stop;
}

done_testing();
