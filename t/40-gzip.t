#!/usr/bin/env perl
# gzip-encoded uploads (SPEC section 4): round trips from gzip and pigz,
# every kind of bad body refused with nothing changed, the decoded-size
# limit against a gzip bomb with bounded memory, and a full disk.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);
use MirrorDAV::Test qw(slurp spew sha1_file);

my $tmp = tempdir('gzip-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $s = MirrorDAV::Test->start_server(
    conf_extra => "<Location /dav>\n  MirrorDAVMaxDecodedSize 1073741824\n</Location>");
my $live = $s->live;
my $have_pigz = !system('command -v pigz >/dev/null 2>&1');

sub curl_put {
    my ($path, $file, @headers) = @_;
    my @h = map { ('-H', $_) } @headers;
    my $out = "$tmp/reply";
    open my $fh, '-|', 'curl', '-s', '-o', $out, '-w', '%{http_code}', '-T', $file, @h, $s->url($path)
        or die "curl: $!";
    my $code = <$fh>;
    close $fh;
    return ($code // 0, slurp($out) // '');
}

sub prop_sha1 {
    my ($path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>});
    return $r->{content} =~ m{<lp\d+:sha1>([0-9a-f]{40})</lp\d+:sha1>} ? $1 : '';
}

sub sidecar_state {
    my ($name) = @_;
    my @st = stat "$live/.mirrordav/$name.db";
    return @st ? "$st[1]:" . sha1_file("$live/.mirrordav/$name.db") : 'none';
}

sub temp_files { opendir my $d, "$live/.mirrordav" or return 0; scalar grep { /^\.(put|tmp)-/ } readdir $d }

# ---------------------------------------------------------------- round trips
sub make_mixed {
    my ($path, $size) = @_;
    # Alternating 1 MiB of text and 1 MiB of random data.
    my $text = join('', map { "line $_ of a log file, with some repeating words\n" } 1 .. 25000);
    $text = substr($text, 0, 1 << 20);
    open my $out, '>:raw', $path or die;
    open my $rnd, '<:raw', '/dev/urandom' or die;
    my $left = $size;
    my $i = 0;
    while ($left > 0) {
        my $n = $left < (1 << 20) ? $left : (1 << 20);
        my $chunk;
        if ($i++ % 2) { read($rnd, $chunk, $n) } else { $chunk = substr($text, 0, $n) }
        print $out $chunk;
        $left -= $n;
    }
    close $out or die;
}

my %files = (
    'zero.bin'  => 0,
    'one.bin'   => 1,
    'text.txt'  => 1 << 20,
    'big.bin'   => 1 << 30,
);
for my $name (sort { $files{$a} <=> $files{$b} } keys %files) {
    my $src = "$tmp/$name";
    if ($name eq 'text.txt') {
        spew($src, substr(join('', map { "the quick brown fox $_\n" } 1 .. 60000), 0, 1 << 20));
    } else {
        make_mixed($src, $files{$name});
    }
    my $want = sha1_file($src);
    my @tools = (['gzip', $files{$name} > (1 << 28) ? 'gzip -1 -c' : 'gzip -c']);
    push @tools, ['pigz', 'pigz -c'] if $have_pigz;
    for my $t (@tools) {
        my ($tool, $cmd) = @$t;
        system("$cmd '$src' > '$src.gz'") == 0 or die "$cmd failed";
        my ($code, $body) = curl_put("/dav/$name", "$src.gz", 'Content-Encoding: gzip');
        ok $code == 201 || $code == 204, "PUT $name ($files{$name} bytes) from $tool: $code" or diag $body;
        is sha1_file("$live/$name"), $want, "stored bytes are the decoded original ($name, $tool)";
        is prop_sha1("/dav/$name"), $want, "the SHA-1 property is sha1sum of the original ($name, $tool)";
        my $got = `curl -s '${\$s->url("/dav/$name")}' | sha1sum`;
        is( (split ' ', $got)[0], $want, "GET returns the original bytes ($name, $tool)");
        unlink "$src.gz";
    }
    unlink "$live/$name" if $files{$name} > (1 << 28);   # keep the disk use down
    unlink $src if $files{$name} > (1 << 28);
}
diag 'pigz not installed: only gzip was used' unless $have_pigz;

# Content-Transfer-Encoding (the original header), chunked, multi-member
{
    spew("$tmp/a", "first member\n");
    spew("$tmp/b", "second member\n");
    system("gzip -c $tmp/a > $tmp/a.gz; gzip -c $tmp/b > $tmp/b.gz; cat $tmp/a.gz $tmp/b.gz > $tmp/ab.gz") == 0 or die;
    my ($code) = curl_put('/dav/multi.txt', "$tmp/ab.gz", 'Content-Transfer-Encoding: gzip', 'Transfer-Encoding: chunked');
    is $code, 201, 'multi-member body, Content-Transfer-Encoding, chunked';
    is slurp("$live/multi.txt"), "first member\nsecond member\n", 'both members decoded';
    my $r = $s->request('OPTIONS', '/dav/');
    is $r->{headers}{'accept-encoding'}, 'gzip', 'OPTIONS advertises Accept-Encoding: gzip';
    ($code, my $body) = curl_put('/dav/multi.txt', "$tmp/a", 'Content-Encoding: br');
    is $code, 415, 'an unsupported coding gets 415';
    like $body, qr/coding/, '... naming the cause';
    is slurp("$live/multi.txt"), "first member\nsecond member\n", '... and changes nothing';
}

# ---------------------------------------------------------------- bad bodies
{
    my $orig = join '', map { "original version line $_\n" } 1 .. 20000;
    spew("$tmp/orig", $orig);
    system("gzip -c $tmp/orig > $tmp/orig.gz") == 0 or die;
    my ($code) = curl_put('/dav/victim.txt', "$tmp/orig.gz", 'Content-Encoding: gzip');
    is $code, 201, 'PUT the version that must survive';
    my $sha = sha1_file("$live/victim.txt");

    my $newdata = join '', map { "new version $_\n" } 1 .. 50000;
    spew("$tmp/new", $newdata);
    system("gzip -c $tmp/new > $tmp/new.gz") == 0 or die;
    my $gz = slurp("$tmp/new.gz");
    my $len = length $gz;

    my %bad;
    { my $g = $gz; substr($g, int($len / 2), 1) = chr(ord(substr($g, int($len / 2), 1)) ^ 0x55); $bad{'a flipped byte mid-stream'} = $g; }
    { my $g = $gz; substr($g, $len - 8, 1) = chr(ord(substr($g, $len - 8, 1)) ^ 0xff); $bad{'a wrong CRC in the trailer'} = $g; }
    { my $g = $gz; substr($g, $len - 1, 1) = chr(ord(substr($g, $len - 1, 1)) ^ 0x01); $bad{'a wrong length in the trailer'} = $g; }
    $bad{'a truncated stream'}         = substr($gz, 0, int($len * 0.7));
    $bad{'a stream cut in the trailer'} = substr($gz, 0, $len - 3);
    $bad{'trailing garbage'}           = $gz . "garbage";
    $bad{'a body that is not gzip'}    = $newdata;
    $bad{'a zero-length gzip body'}    = '';

    for my $what (sort keys %bad) {
        spew("$tmp/bad", $bad{$what});
        my $before = sidecar_state('victim.txt');
        my ($code, $body) = curl_put('/dav/victim.txt', "$tmp/bad", 'Content-Encoding: gzip');
        is $code, 400, "$what: 400";
        like $body, qr/gzip/i, "$what: the body names the cause";
        is sha1_file("$live/victim.txt"), $sha, "$what: the previous version is intact";
        is sidecar_state('victim.txt'), $before, "$what: the sidecar is unchanged";
        is temp_files(), 0, "$what: no temp file left";
        my $g = `curl -s '${\$s->url('/dav/victim.txt')}' | sha1sum`;
        is( (split ' ', $g)[0], $sha, "$what: GET still serves the old version");
    }
    # A new file refused leaves nothing at all.
    spew("$tmp/bad", substr($gz, 0, 100));
    my ($c2) = curl_put('/dav/never.txt', "$tmp/bad", 'Content-Encoding: gzip');
    is $c2, 400, 'a corrupt body for a new file: 400';
    ok !-e "$live/never.txt" && !-e "$live/.mirrordav/never.txt.db", '... and neither file nor sidecar exists';
}

# ---------------------------------------------------------------- gzip bomb
{
    # 10 GiB of zeros: ten concatenated members of 1 GiB each (~10 MiB).
    system("head -c 1073741824 /dev/zero | gzip -1 -c > $tmp/gig.gz") == 0 or die;
    system("for i in 1 2 3 4 5 6 7 8 9 10; do cat $tmp/gig.gz; done > $tmp/bomb.gz") == 0 or die;
    diag sprintf 'bomb: %.1f MiB compressed, 10 GiB decoded', (-s "$tmp/bomb.gz") / 1048576;

    my %start = map { ($_ => rss($_)) } $s->children;
    ok scalar(grep { $_ > 0 } values %start) >= 1, 'sampling the RSS of ' . scalar(keys %start) . ' httpd children';
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        exec 'curl', '-s', '-o', "$tmp/bomb.reply", '-T', "$tmp/bomb.gz",
            '-H', 'Content-Encoding: gzip', $s->url('/dav/bomb.bin');
        exit 127;
    }
    my %peak = %start;
    while (waitpid($pid, 1) == 0) {
        for my $c (keys %start) { my $r = rss($c); $peak{$c} = $r if $r > ($peak{$c} // 0) }
        sleep 0.02;
    }
    my $grew = 0;
    for my $c (keys %start) { my $d = $peak{$c} - $start{$c}; $grew = $d if $d > $grew }
    like slurp("$tmp/bomb.reply") // '', qr/MaxDecodedSize/, 'the bomb is refused, naming the limit';
    ok !-e "$live/bomb.bin", 'nothing of it on disk';
    is temp_files(), 0, 'no temp file left';
    diag join ', ', map { sprintf '%d: %d -> %d KiB', $_, $start{$_}, $peak{$_} } sort keys %start;
    cmp_ok $grew, '<=', 16 * 1024, sprintf('httpd child RSS grew by %.1f MiB (at most 16)', $grew / 1024);
}

sub rss {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return 0;
    while (my $line = <$fh>) { return $1 if $line =~ /^VmRSS:\s+(\d+)/ }
    return 0;
}

# ---------------------------------------------------------------- full disk
SKIP: {
    my $small = tempdir('gzip-full-XXXXXX', TMPDIR => 1, CLEANUP => 0);
    skip 'cannot mount a small tmpfs here (needs root)', 5
        if $> != 0 || system("mount -t tmpfs -o size=16m tmpfs '$small' 2>/dev/null") != 0;
    my $f = MirrorDAV::Test->start_server(volume => "$small/volume");
    spew("$tmp/keep", "keep me\n");
    system("gzip -c $tmp/keep > $tmp/keep.gz");
    my ($code) = curl_put_to($f, '/dav/keep.txt', "$tmp/keep.gz");
    is $code, 201, 'PUT a small file on a 16 MiB volume';
    system("head -c 33554432 /dev/urandom | gzip -1 -c > $tmp/huge.gz");
    ($code, my $body) = curl_put_to($f, '/dav/keep.txt', "$tmp/huge.gz");
    is $code, 507, 'a body larger than the disk gets 507';
    like $body, qr/space|storage/i, '... naming the cause';
    is slurp("${\$f->live}/keep.txt"), "keep me\n", '... and the old version is intact';
    opendir my $d, "${\$f->live}/.mirrordav";
    is scalar(grep { /^\.(put|tmp)-/ } readdir $d), 0, '... with no temp file left';
    undef $f;
    for (1 .. 50) { last if system("umount '$small' 2>/dev/null") == 0; sleep 0.1 }
    system("umount -l '$small' 2>/dev/null");
    rmdir $small;
}

sub curl_put_to {
    my ($srv, $path, $file) = @_;
    my $out = "$tmp/reply2";
    my $code = `curl -s -o '$out' -w '%{http_code}' -T '$file' -H 'Content-Encoding: gzip' '${\$srv->url($path)}'`;
    return ($code, slurp($out) // '');
}

done_testing;
