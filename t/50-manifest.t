#!/usr/bin/env perl
# `mirrordav manifest generate|check` (SPEC section 7), read back by an
# independent Perl reader: escaping of hostile names, CRCs, collation
# order, the trailer's SHA-1, exclusions, CRLF, and every single-byte
# corruption named with its line.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Path qw(make_path);
use Compress::Zlib ();
use Digest::SHA qw(sha1_hex);
use MirrorDAV::Test qw(slurp spew);

my $admin = ($ENV{MIRRORDAV_BUILD} // MirrorDAV::Test->build) . "/mirrordav";
my $dir   = File::Temp::tempdir('manifest-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $tree  = "$dir/tree";

# A tree with names that need escaping and names that sort differently by
# locale than by bytes.
my @files = ("plain.txt", "comma,name", "eq=name", "pct%41name", "new\nline",
             "tab\tname", "space name", "caf\x{c3}\x{a9}", "B-upper", "a-lower",
             "a.txt", "a/x", "a/b/deep", "header", "trailer",
             "sub/inner.manifest", "sub/keep");
for my $f (@files) {
    my $p = "$tree/$f";
    (my $d = $p) =~ s{/[^/]*$}{};
    make_path($d);
    spew($p, "data of $f\n" x (1 + length $f));
}
make_path("$tree/.mirrordav", "$tree/a/.mirrordav", "$tree/empty");
spew("$tree/.mirrordav/x.db", "sidecar");
spew("$tree/a/.mirrordav/y.db", "sidecar");

# ---------------------------------------------------------------- reader
sub crc_ok {
    my ($line) = @_;
    my ($body, $crc) = $line =~ /^(.*,_internal_record_crc=)([0-9a-f]{8})$/s
        or return 0;
    return sprintf('%08x', Compress::Zlib::crc32("${body}00000000")) eq $crc;
}
sub unesc { my $s = shift; $s =~ s/%([0-9A-F]{2})/chr hex $1/ge; $s }

# Returns (records, error): each record [name, {k => v}, raw line].
sub parse {
    my ($text) = @_;
    my (@recs, $before);
    my @lines = split /(?<=\n)/, $text;
    my $pos = 0;
    for my $i (0 .. $#lines) {
        my $raw = $lines[$i];
        return (\@recs, "line " . ($i + 1) . ": no line end") unless $raw =~ /\n$/;
        (my $l = $raw) =~ s/\r?\n$//;
        return (\@recs, "line " . ($i + 1) . ": crc") unless crc_ok($l);
        $l =~ s/,_internal_record_crc=[0-9a-f]{8}$//;
        my ($name, @kv) = split /,/, substr($l, 1), -1;
        my %kv = map { my ($k, $v) = split /=/, $_, 2; (unesc($k), unesc($v)) } @kv;
        if (($kv{_internal_type} // '') eq 'trailer') {
            return (\@recs, "trailer hash")
                unless sha1_hex(substr($text, 0, $pos)) eq $kv{_internal_file_sha1_hash};
        }
        push @recs, [unesc($name), \%kv, $l];
        $pos += length $raw;
    }
    return (\@recs, undef);
}

# Independent collation: compare component lists, ancestors after.
sub mcmp {
    my @a = length $_[0] ? split(m{/}, $_[0], -1) : ();
    my @b = length $_[1] ? split(m{/}, $_[1], -1) : ();
    while (@a && @b) {
        my $c = (shift @a) cmp (shift @b);
        return $c if $c;
    }
    return @a ? -1 : @b ? 1 : 0;
}

# ---------------------------------------------------------------- generate
my $out = `'$admin' manifest generate '$tree' 2>&1`;
is($? >> 8, 0, 'generate to stdout exits 0') or diag($out);
my ($recs, $err) = parse($out);
ok(!defined $err, 'an independent reader accepts every CRC and the trailer')
    or diag($err);
is($recs->[0][1]{_internal_type}, 'header', 'the header first');
is($recs->[0][1]{_internal_version}, '1', 'version 1');
like($recs->[0][2], qr/^=header,_internal_type=header,_internal_version=1,/,
     'the header keys in byte order');
is($recs->[-1][1]{_internal_type}, 'trailer', 'the trailer last');
my @entries = @$recs[1 .. $#$recs - 1];
my @names = map { $_->[0] } @entries;

my %want = ('' => 'directory', empty => 'directory', a => 'directory',
            'a/b' => 'directory', sub => 'directory');
$want{$_} = 'file' for grep { !/\.manifest$/ } @files;
is_deeply([sort @names], [sort keys %want],
          'every entry once: sidecar folders and manifest files left out');
is_deeply(\@names, [sort { mcmp($a, $b) } @names],
          'records in collation order (byte order, post-order, root last)');
is($names[-1], '', 'the root is the last record');

my ($bad_hash, $bad_type, $bad_keys) = (0, 0, 0);
for my $r (@entries) {
    my ($name, $kv, $line) = @$r;
    $bad_type++ unless ($kv->{type} // '') eq $want{$name};
    if ($want{$name} eq 'file') {
        my $data = slurp("$tree/$name");
        $bad_hash++ unless ($kv->{hash} // '') eq sha1_hex($data)
            && $kv->{st_size} == length $data;
    }
    my @keys = $line =~ /,([^,=]+)=/g;
    $bad_keys++ unless join(',', @keys) eq join(',', sort @keys);
    $bad_keys++ unless $kv->{st_mtime} == (lstat "$tree/$name")[9];
}
is($bad_type, 0, 'every type right');
is($bad_hash, 0, 'every file hash and size equal the data');
is($bad_keys, 0, 'keys in byte order; st_mtime as lstat says');

# ---------------------------------------------------------------- -o, check
my $file = "$tree/sub/tree.manifest";
$out = `'$admin' manifest generate '$tree' -o '$file' 2>&1`;
is($? >> 8, 0, 'generate -o exits 0') or diag($out);
opendir(my $dh, "$tree/sub") or die;
is_deeply([sort grep { !/^\./ } readdir $dh], [qw(inner.manifest keep tree.manifest)],
          'the output is in place, no temp file left beside it');
closedir $dh;
$out = `'$admin' manifest check '$file' 2>&1`;
is($? >> 8, 0, 'check accepts it') or diag($out);
like($out, qr/valid, \d+ entries/, 'check says so');
my $again = slurp($file);
(undef, $err) = parse($again);
ok(!defined $err, 'the -o output reads independently');
unlike($again, qr/^=sub\/tree\.manifest,/m, 'the output does not describe itself');

# CRLF: rewrite every line end and the trailer's hash, then check.
{
    my ($r) = parse($again);
    my $text = '';
    for my $rec (@$r[0 .. $#$r - 1]) { $text .= "$rec->[2],_internal_record_crc=" .
        sprintf('%08x', Compress::Zlib::crc32("$rec->[2],_internal_record_crc=00000000")) . "\r\n" }
    my $tl = "=trailer,_internal_file_sha1_hash=" . sha1_hex($text) .
             ",_internal_type=trailer,_internal_record_crc=";
    $text .= $tl . sprintf('%08x', Compress::Zlib::crc32("${tl}00000000")) . "\r\n";
    spew("$dir/crlf.manifest", $text);
    $out = `'$admin' manifest check '$dir/crlf.manifest' 2>&1`;
    is($? >> 8, 0, 'a manifest with CRLF line ends reads') or diag($out);
}

# Every byte of a small manifest flipped: exit 3, and the right line named.
{
    my $small = "$dir/small";
    make_path("$small/d");
    spew("$small/d/f,1", "x");
    spew("$small/g", "y");
    system("'$admin' manifest generate '$small' -o '$dir/small.manifest' 2>/dev/null") == 0
        or die;
    my $text = slurp("$dir/small.manifest");
    my ($undetected, $wrong_line, $line) = (0, 0, 1);
    for my $i (0 .. length($text) - 1) {
        my $c = $text;
        substr($c, $i, 1) = chr(ord(substr($c, $i, 1)) ^ 0x20);
        spew("$dir/flip.manifest", $c);
        my $o = `'$admin' manifest check '$dir/flip.manifest' 2>&1`;
        my $rc = $? >> 8;
        if ($rc != 3) { $undetected++; diag("byte $i: exit $rc: $o") }
        elsif ($o !~ /:$line: corrupt:/) { $wrong_line++; diag("byte $i (line $line): $o") }
        $line++ if substr($text, $i, 1) eq "\n";
    }
    is($undetected, 0, 'flipping any of ' . length($text) . ' bytes gives exit 3');
    is($wrong_line, 0, 'and names the line of the flipped byte');
}

is(system("'$admin' manifest check '$dir/nonexistent' 2>/dev/null") >> 8, 2,
   'a missing file is exit 2');
is(system("'$admin' manifest 2>/dev/null") >> 8, 2, 'usage is exit 2');

done_testing;
