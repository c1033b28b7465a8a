#!/usr/bin/env perl
# Concurrent writers to one file: whoever wins, the file is one writer's
# whole body, and the SHA-1 and size recorded in its sidecar describe that
# same body (a hash recorded against another writer's data would look like
# corruption at rest to the verifier).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use MirrorDAV::Test qw(sha1_file random_file);

my $s    = MirrorDAV::Test->start_server(fsync => 'Off');
my $live = $s->live;
my $tmp  = tempdir('concurrent-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my ($writers, $rounds) = (8, $ENV{ROUNDS} || 25);

my %sha;
for my $w (1 .. $writers) {
    random_file("$tmp/body$w", ($ENV{BODY} || 64 * 1024) + $w * 4099);
    $sha{ sha1_file("$tmp/body$w") } = $w;
}

my @kids;
for my $w (1 .. $writers) {
    my $pid = fork // die;
    if (!$pid) {
        # One keep-alive connection per writer, so the PUTs really overlap.
        open my $cfg, '>', "$tmp/cfg$w" or die;
        print $cfg qq{upload-file = "$tmp/body$w"\nurl = "${\$s->url('/dav/shared.bin')}"\n} for 1 .. $rounds;
        close $cfg;
        my @codes = split /\n/, `curl -s -o /dev/null -w '%{http_code}\\n' -K $tmp/cfg$w`;
        exit((grep { /^20[14]$/ } @codes) == $rounds ? 0 : 1);
    }
    push @kids, $pid;
}
my $failed = 0;
for (@kids) { waitpid $_, 0; $failed++ if $? }
is $failed, 0, "$writers writers x $rounds PUTs each, all answered 2xx";

my $data = sha1_file("$live/shared.bin");
ok exists $sha{$data}, 'the file is one writer\'s whole body';
my $r = $s->propfind('/dav/shared.bin', 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/><M:content-version/></D:prop></D:propfind>});
my ($recorded) = $r->{content} =~ m{<lp\d+:sha1>([0-9a-f]{40})</lp\d+:sha1>};
is $recorded, $data, 'the SHA-1 recorded in the sidecar is that body\'s';
my ($version) = $r->{content} =~ m{<lp\d+:content-version>(\d+)</};
ok $version >= 1 && $version <= $writers * $rounds,
   "the content version counts the recorded writes ($version; a write replaced before it was recorded records nothing)";
my $fsck = `$ENV{MIRRORDAV_BUILD}/mirrordav fsck --volume ${\$s->volume} 2>&1`;
is $? >> 8, 0, 'fsck finds the volume clean' or diag $fsck;

done_testing;
