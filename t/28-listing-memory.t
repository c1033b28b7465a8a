#!/usr/bin/env perl
# Listings are streamed (SPEC section 2, memory bounded): PROPFIND Depth 1
# and the HTML listing of a collection of 100 000 entries, made directly on
# disk, keep the serving child's peak memory (VmHWM) growth under a bound,
# and still list every entry.  The browser's page sorts, so it holds the
# names of the one directory (docs/BROWSER.md), and the same bound covers
# that, as does a tighter one: little more than the names themselves; the
# bare listing other clients get is checked too.
#   MIRRORDAV_LISTING_ENTRIES=N   entries in the collection (default 100000)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MirrorDAV::Test;

my $N = $ENV{MIRRORDAV_LISTING_ENTRIES} || 100_000;
my $BOUND_KB = 10 * 1024;   # peak RSS growth allowed per child

my $srv  = MirrorDAV::Test->start_server;
my $live = $srv->live;

# The collection, made on disk: 1 in 100 entries is a folder.  Long names
# make a held listing show clearly.
my $dir = "$live/many";
mkdir $dir or die "$dir: $!";
my $pad = 'x' x 40;
my ($files, $dirs) = (0, 0);
for my $i (1 .. $N) {
    my $name = sprintf "%s/entry-%06d-%s", $dir, $i, $pad;
    if ($i % 100 == 0) {
        mkdir $name or die "$name: $!";
        $dirs++;
    } else {
        open my $fh, '>', $name or die "$name: $!";
        close $fh;
        $files++;
    }
}
if ($< == 0) {
    system('chown', '-R', 'www-data:www-data', $dir) == 0 or die 'chown';
}
note("$files files and $dirs folders in $dir");

sub hwm {
    my %h;
    for my $pid ($srv->children) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) { $h{$pid} = $1 if /^VmHWM:\s+(\d+)\s+kB/ }
        close $fh;
    }
    return \%h;
}

# Runs CMD (a curl fetching into OUT) on a freshly started server and
# returns the largest VmHWM growth of any child, in kB.  Each measurement
# has new children: memory that one listing left in a child's allocator
# would hide the next one's peak.  Every child is first warmed with a small
# PROPFIND and HTML listing, so that what is measured is the listing, not
# the first request's setup.  A child born meanwhile is measured from the
# largest peak the others had before.
sub growth {
    my ($what, @cmd) = @_;
    $srv->restart;
    for (1 .. 8) {
        $srv->propfind('/dav/', 1);
        $srv->get('/dav/', { Accept => 'text/html' });
    }
    my $before = hwm();
    my ($base) = sort { $b <=> $a } values %$before;
    system(@cmd) == 0 or die "$what: @cmd failed";
    my $after = hwm();
    my $max = 0;
    for my $pid (keys %$after) {
        my $g = $after->{$pid} - ($before->{$pid} // $base // 0);
        $max = $g if $g > $max;
    }
    note(sprintf "%s: peak growth %d kB (children before: %s; after: %s)", $what, $max,
         join(' ', map { "$_=$before->{$_}" } sort keys %$before),
         join(' ', map { "$_=$after->{$_}" } sort keys %$after));
    return $max;
}

my $tmp = "$srv->{base}/out";
my $url = $srv->url('/dav/many/');

# ------------------------------------------------------------ PROPFIND
my $body = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>'
         . '<D:resourcetype/><D:getcontentlength/><D:getlastmodified/>'
         . '</D:prop></D:propfind>';
my $g = growth('PROPFIND Depth 1', 'curl', '-sS', '-o', $tmp, '-w', '%{http_code}\n',
               '-X', 'PROPFIND', '-H', 'Depth: 1', '-H', 'Content-Type: application/xml',
               '--data-binary', $body, $url);
cmp_ok($g, '<', $BOUND_KB, "PROPFIND Depth 1 of $N entries: child peak RSS grows < 10 MB ($g kB)");
my ($hrefs, $colls) = (0, 0);
my %seen;
open my $fh, '<', $tmp or die;
{
    local $/ = '</D:response>';
    while (my $resp = <$fh>) {
        my ($href) = $resp =~ m{<D:href>([^<]*)</D:href>} or next;
        $seen{$href}++;
        $hrefs++;
        $colls++ if $resp =~ m{<D:collection\s*/>};
    }
}
close $fh;
is($hrefs, $N + 1, 'PROPFIND lists every entry once, plus the collection itself');
is(scalar(keys %seen), $N + 1, '... no entry twice');
is($colls, $dirs + 1, '... the folders as collections');
ok($seen{'/dav/many/'} && $seen{sprintf '/dav/many/entry-%06d-%s', 1, $pad}
   && $seen{sprintf '/dav/many/entry-%06d-%s/', 100, $pad}, '... with the right hrefs');

# ------------------------------------------------------------ HTML listing
$g = growth('HTML listing', 'curl', '-sS', '-o', $tmp, '-H', 'Accept: text/html', $url);
cmp_ok($g, '<', $BOUND_KB, "HTML listing of $N entries: child peak RSS grows < 10 MB ($g kB)");
# What it holds is about the names: per entry its name and NUL, a type
# byte, a 4-byte offset and the sort's 4-byte scratch copy (10 bytes
# over the name; 12 allowed), plus 1 MB for everything else.
{
    my $len = length(sprintf 'entry-%06d-%s', 1, $pad);
    my $cap = int(($N * ($len + 12) + 1024 * 1024) / 1024);
    cmp_ok($g, '<', $cap, "... about the names alone: < $cap kB (names of $len bytes + 12 each, + 1 MB)");
}
my ($rows, $dirrows) = (0, 0);
my %rowseen;
open $fh, '<', $tmp or die;
while (<$fh>) {
    next unless m{^<tr class="(?:dir|file)"><td class="name"><a href="\./[^"]*">(entry-\d{6}-x+)(/?)</a>};
    $rows++;
    $rowseen{$1}++;
    $dirrows++ if $2;
}
close $fh;
is($rows, $N, 'the HTML listing has a row for every entry');
is(scalar(keys %rowseen), $N, '... none twice');
is($dirrows, $dirs, '... the folders marked as folders');
like(`tail -c 100 '$tmp'`, qr{</table>\s*</body></html>\s*$}, '... and the page is complete');

# ------------------------------------------------------------ bare listing
$g = growth('bare listing', 'curl', '-sS', '-o', $tmp, $url);
cmp_ok($g, '<', $BOUND_KB, "bare listing of $N entries: child peak RSS grows < 10 MB ($g kB)");
$rows = 0;
open $fh, '<', $tmp or die;
while (<$fh>) { $rows++ if m{^<tr><td><a href="[^"]*">entry-\d{6}-x+/?</a>} }
close $fh;
is($rows, $N, 'the bare listing has a row for every entry');

done_testing;
