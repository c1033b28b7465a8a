#!/usr/bin/env perl
# DELETE of a 100 000-file tree keeps the serving process's memory bounded:
# directories are read a piece at a time with per-entry pools, never as a
# list of names.  The tree is made directly on disk (one flat folder, the
# worst case for a list), owned by the server's user; the peak resident
# size (VmHWM) of every httpd child is read before and after, and the
# growth must stay under 10 MB (a list of 100 000 entries costs several
# times that).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MirrorDAV::Test;
use MirrorDAV::CrashTree;

plan skip_all => 'needs /proc/PID/status' unless -r "/proc/$$/status";
MirrorDAV::CrashTree::use_fast_tmpdir();   # 100 000 files: tmpfs when there is one
my $s    = MirrorDAV::Test->start_server;
my $live = $s->live;
my $n    = 100_000;

mkdir "$live/big" or die;
for my $i (1 .. $n) {
    open my $fh, '>', sprintf("$live/big/file-with-a-longish-name-%06d.txt", $i) or die "$i: $!";
    close $fh;
}
system('chown', '-R', '--reference', $live, "$live/big") == 0 or die;
is $s->propfind('/dav/big', 0)->{status}, 207, 'the tree is served';

sub peaks {
    my %kb;
    for my $pid ($s->children) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) { $kb{$pid} = $1 if /^VmHWM:\s+(\d+) kB/ }
    }
    return \%kb;
}
# Every child has served something: its peak is past start-up.
$s->get('/dav/') for 1 .. 10;
my $before = peaks();
my ($base) = sort { $a <=> $b } values %$before;
ok defined $base, 'the children\'s peak memory is readable';

my $r = $s->delete('/dav/big');
is $r->{status}, 204, "DELETE of $n files -> 204" or diag $r->{content};
ok !-e "$live/big", 'the tree is gone';

my $after = peaks();
my $growth = 0;
for my $pid (keys %$after) {
    my $g = $after->{$pid} - ($before->{$pid} // $base);
    $growth = $g if $g > $growth;
}
note "largest growth of a child's peak: $growth kB";
cmp_ok $growth, '<', 10 * 1024, 'the serving child\'s peak memory grew by less than 10 MB';

done_testing;
