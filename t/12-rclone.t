#!/usr/bin/env perl
# rclone's webdav backend, configured by environment only: a tree of about
# 1000 files (nested folders, names with spaces and non-ASCII, sizes 0 B to
# 1 MiB) goes up and comes back byte-identical, and the live tree on disk
# equals the source.  Then X-OC-Mtime (SPEC section 2) directly with curl,
# and rclone's own modtimes with the ownCloud vendor, which sends it.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use File::Find ();
use File::Path qw(make_path);
use Digest::SHA ();
use Encode ();
use POSIX ();
use MirrorDAV::Test qw(slurp spew);

my $srv = MirrorDAV::Test->start_server;
my $live = $srv->live;
my $tmp = File::Temp::tempdir('rclone-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $src = "$tmp/src";

# ------------------------------------------------------------ the source tree
srand(20261121);
my @names = ('plain', 'with spaces', 'café é', '日本', 'emoji 🎉', 'Ünïcødé ñ',
             'a+b&c', "it's (1)", 'x,y~[z]');
sub enc { Encode::encode('UTF-8', $_[0]) }

my @dirs = ('');
{
    my @fan = (5, 3, 2, 1);    # folders per level: 5 + 15 + 30 + 30
    my @level = ('');
    for my $n (@fan) {
        my @next;
        for my $parent (@level) {
            for my $i (1 .. $n) {
                my $name = $names[int rand @names] . " d$i";
                push @next, $parent eq '' ? $name : "$parent/$name";
            }
        }
        push @dirs, @next;
        @level = @next;
    }
}
make_path(map { enc("$src/$_") } @dirs);
make_path(enc("$src/empty dir é"));

open my $rnd, '<:raw', '/dev/urandom' or die;
my %want;          # relative byte path -> sha1
my $nfiles = 1000;
my $total = 0;
for my $i (0 .. $nfiles - 1) {
    my $dir = $dirs[$i % @dirs];
    my $name = $names[int rand @names] . " f$i" . ($i % 3 ? '.bin' : '.txt');
    # Mostly small, a few large: 0 B, exactly 1 MiB, and a spread between.
    my $size = $i == 0 ? 0 : $i == 1 ? 1 << 20 : $i == 2 ? 1 : int((1 << 20) * rand() ** 14);
    my $data = '';
    read($rnd, $data, $size) == $size or die "urandom" if $size;
    my $rel = enc($dir eq '' ? $name : "$dir/$name");
    spew("$src/$rel", $data);
    $want{$rel} = Digest::SHA::sha1_hex($data);
    $total += $size;
}
close $rnd;
note(sprintf "source: %d files, %d folders, %.1f MiB", scalar(keys %want),
     scalar(@dirs), $total / 1048576);

# Every file under DIR (sidecar folders skipped): relative path -> sha1.
sub tree_sha1 {
    my ($dir) = @_;
    my %h;
    File::Find::find({ no_chdir => 1, wanted => sub {
        if (-d $_ && $_ =~ m{/\.mirrordav$}) { $File::Find::prune = 1; return }
        return unless -f $_ || -l $_;
        (my $rel = $_) =~ s{^\Q$dir\E/}{};
        $h{$rel} = -l $_ ? 'symlink' : Digest::SHA->new(1)->addfile($_, 'b')->hexdigest;
    } }, $dir);
    return \%h;
}
sub tree_dirs {
    my ($dir) = @_;
    my @d;
    File::Find::find({ no_chdir => 1, wanted => sub {
        if (-d $_ && $_ =~ m{/\.mirrordav$}) { $File::Find::prune = 1; return }
        return unless -d $_ && $_ ne $dir;
        (my $rel = $_) =~ s{^\Q$dir\E/}{};
        push @d, $rel;
    } }, $dir);
    return [sort @d];
}

# Compares two {path => sha1} maps; one test, with the differences as diag.
sub same_tree {
    my ($got, $exp, $name) = @_;
    my @diff;
    for my $k (sort keys %$exp) {
        push @diff, "missing: $k" unless exists $got->{$k};
        push @diff, "differs: $k" if exists $got->{$k} && $got->{$k} ne $exp->{$k};
    }
    push @diff, map { "extra: $_" } grep { !exists $exp->{$_} } sort keys %$got;
    ok(!@diff, $name) or diag(join "\n", @diff[0 .. ($#diff < 30 ? $#diff : 29)],
                              @diff > 30 ? ('... ' . (@diff - 30) . ' more') : ());
}

is_deeply(tree_sha1($src), \%want, 'source tree written as intended');

# ------------------------------------------------------------ rclone
my %env = (
    RCLONE_CONFIG            => "$tmp/rclone.conf",   # never ~/.config
    RCLONE_CONFIG_MD_TYPE    => 'webdav',
    RCLONE_CONFIG_MD_URL     => $srv->url('/dav/'),
    RCLONE_CONFIG_MD_VENDOR  => 'other',
    HOME                     => $tmp,
    XDG_CACHE_HOME           => "$tmp/cache",
    XDG_CONFIG_HOME          => "$tmp/config",
);

sub rclone {
    my ($extra_env, @args) = @_;
    local @ENV{keys %env} = values %env;
    local @ENV{keys %$extra_env} = values %$extra_env;
    my $log = "$tmp/rclone.log";
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', $log; open STDERR, '>&', \*STDOUT;
        { exec 'timeout', '180', 'rclone', '--transfers', '4', '--retries', '1',
               '--low-level-retries', '1', @args };
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    return ($? >> 8, slurp($log) // '');
}

my $t0 = time;
my ($rc, $out) = rclone({}, 'copy', '--create-empty-src-dirs', $src, 'md:tree');
is($rc, 0, 'rclone copy up exits 0') or diag($out);
note('upload took ' . (time - $t0) . ' s');

same_tree(tree_sha1("$live/tree"), \%want, 'the live tree on disk equals the source');
is_deeply(tree_dirs("$live/tree"), tree_dirs($src), 'the live tree has the same folders');

$t0 = time;
($rc, $out) = rclone({}, 'copy', '--create-empty-src-dirs', 'md:tree', "$tmp/down");
is($rc, 0, 'rclone copy down exits 0') or diag($out);
note('download took ' . (time - $t0) . ' s');
same_tree(tree_sha1("$tmp/down"), \%want, 'the downloaded tree is byte-identical to the source');
is_deeply(tree_dirs("$tmp/down"), tree_dirs($src), 'the downloaded tree has the same folders');

($rc, $out) = rclone({}, 'check', '--size-only', $src, 'md:tree');
is($rc, 0, 'rclone check: no differences') or diag($out);

($rc, $out) = rclone({}, 'lsf', '-R', 'md:');
is($rc, 0, 'rclone lsf -R exits 0') or diag($out);
unlike($out, qr/\.mirrordav/, 'rclone never sees .mirrordav');

# ------------------------------------------------------------ X-OC-Mtime
sub curl_put {
    my ($url, $file, @hdr) = @_;
    my $o = `curl -s -o '$tmp/curl.body' -D '$tmp/curl.hdr' -w '%{http_code}' -T '$file' @{[map { "-H '$_'" } @hdr]} '$url'`;
    return ($o, slurp("$tmp/curl.hdr") // '', slurp("$tmp/curl.body") // '');
}

spew("$tmp/v1", "version one\n");
spew("$tmp/v2", "version two, longer\n");
my ($code, $hdr, $body) = curl_put($srv->url('/dav/mtime.txt'), "$tmp/v1", 'X-OC-Mtime: 1234567890');
like($code, qr/^20[14]$/, 'PUT with X-OC-Mtime succeeds') or diag("$hdr$body");
like($hdr, qr/^X-OC-Mtime:\s*accepted\r?$/mi, 'the reply says X-OC-Mtime: accepted');
is((stat "$live/mtime.txt")[9], 1234567890, 'the mtime on disk is 1234567890');
is(slurp("$live/mtime.txt"), "version one\n", 'the data is stored');
my $r = $srv->propfind('/dav/mtime.txt', 0);
like($r->{content}, qr/Fri, 13 Feb 2009 23:31:30 GMT/, 'PROPFIND getlastmodified shows it');

($code, $hdr, $body) = curl_put($srv->url('/dav/plain.txt'), "$tmp/v1");
like($code, qr/^20[14]$/, 'PUT without X-OC-Mtime succeeds');
unlike($hdr, qr/^X-OC-Mtime:/mi, 'no X-OC-Mtime header in the reply without one in the request');
cmp_ok(abs(time - (stat "$live/plain.txt")[9]), '<', 120, 'without it the mtime is now');

for my $bad ('yesterday', '12abc', '-5', '0x10', 'nan', 'inf', '99999999999999999999') {
    # Each case starts from the same old version.
    ($code) = curl_put($srv->url('/dav/mtime.txt'), "$tmp/v1", 'X-OC-Mtime: 1234567890');
    like($code, qr/^20[14]$/, "(re)set the old version before trying '$bad'");
    ($code, $hdr, $body) = curl_put($srv->url('/dav/mtime.txt'), "$tmp/v2", "X-OC-Mtime: $bad");
    is($code, 400, "X-OC-Mtime: '$bad' -> 400")
        or diag("got $code; mtime now " . (stat "$live/mtime.txt")[9]);
    like($body, qr/mtime/i, "... with a body naming the cause") or diag($body);
    is(slurp("$live/mtime.txt"), "version one\n", '... and the old file intact');
    is((stat "$live/mtime.txt")[9], 1234567890, '... with its old mtime');
}
my @left = glob("$live/.mirrordav/.put-*");
is(scalar(@left), 0, 'refused PUTs leave no temporary file') or diag("@left");

# ------------------------------------------------------------ rclone modtimes
# With the ownCloud vendor rclone sends X-OC-Mtime; the modtimes survive.
my $small = "$tmp/small";
make_path("$small/sub é");
my %mt;
for my $i (1 .. 20) {
    my $rel = ($i % 2 ? 'sub é/' : '') . "f $i.dat";
    spew(enc("$small/$rel"), "data $i\n" x $i);
    my $m = 1_500_000_000 + $i * 86_400 + 7;
    utime $m, $m, enc("$small/$rel") or die;
    $mt{enc($rel)} = $m;
}
($rc, $out) = rclone({ RCLONE_CONFIG_MD_VENDOR => 'owncloud' }, 'copy', $small, 'md:oc');
is($rc, 0, 'rclone (vendor owncloud) copy up exits 0') or diag($out);
my @bad = grep { ((stat "$live/oc/$_")[9] // -1) != $mt{$_} } sort keys %mt;
is_deeply(\@bad, [], 'rclone-uploaded files keep their modtimes on disk')
    or diag(join "\n", map { "$_: " . ((stat "$live/oc/$_")[9] // 'missing') . " want $mt{$_}" } @bad);
($rc, $out) = rclone({ RCLONE_CONFIG_MD_VENDOR => 'owncloud' }, 'lsl', 'md:oc');
my %seen = map { /^\s*\d+ (\S+ \S+) (.*)$/ ? ($2 => $1) : () } split /\n/, $out;
is(scalar(keys %seen), 20, 'rclone lsl lists the 20 files') or diag($out);
($rc, $out) = rclone({ RCLONE_CONFIG_MD_VENDOR => 'owncloud' }, 'check', $small, 'md:oc');
is($rc, 0, 'rclone check (sizes and modtimes) finds no differences') or diag($out);

done_testing;
