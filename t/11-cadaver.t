#!/usr/bin/env perl
# cadaver, the command-line WebDAV client, scripted non-interactively
# (commands on stdin): every command it issues does what it says, checked on
# the volume's disk and over HTTP.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use MirrorDAV::Test qw(slurp spew sha1_file random_file);

my $srv  = MirrorDAV::Test->start_server;
my $live = $srv->live;
my $tmp  = File::Temp::tempdir('cadaver-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$tmp/home" or die;   # no ~/.cadaverrc, no ~/.netrc

# Runs one cadaver session with COMMANDS (one per line) and returns its output.
sub cadaver {
    my (@cmds) = @_;
    my $script = "$tmp/script";
    spew($script, join("\n", @cmds, 'quit') . "\n");
    my $url = $srv->url('/dav/');
    my $out = `cd '$tmp' && HOME='$tmp/home' timeout 60 cadaver '$url' < '$script' 2>&1`;
    isnt($? >> 8, 124, "cadaver (@cmds[0..0]...) finished in time");
    return $out;
}

# Checks that cadaver reported success for a command whose progress line
# starts with PREFIX; shows the whole output otherwise.
sub succeeded {
    my ($out, $re, $name) = @_;
    like($out, qr/$re[^\n]*succeeded/, $name) or diag("cadaver output:\n$out");
}

my $src = random_file("$tmp/src.bin", 300 * 1024 + 17);
my $src_sha = sha1_file($src);

# mkcol
my $out = cadaver('mkcol "dir one"');
succeeded($out, qr/Creating `dir one'/, 'mkcol reported success');
ok(-d "$live/dir one", 'mkcol: the directory exists on disk');

# put
$out = cadaver(qq{put "$src" "dir one/data.bin"});
succeeded($out, qr/Uploading/, 'put reported success');
ok(-f "$live/dir one/data.bin", 'put: the file exists on disk');
is(sha1_file("$live/dir one/data.bin"), $src_sha, 'put: stored bytes are identical');
my $r = $srv->get('/dav/dir%20one/data.bin');
is($r->{status}, 200, 'GET of the put file');
is(length($r->{content}), -s $src, 'GET: same length');
ok($r->{content} eq slurp($src), 'GET: same bytes');

# ls
$out = cadaver('ls "dir one"', 'ls');
succeeded($out, qr/Listing collection `\/dav\/dir(?: |%20)one\/'/, 'ls of the subcollection');
like($out, qr/^\s+data\.bin\s+${\(-s $src)}\s/m, 'ls lists data.bin with its size');
like($out, qr/^Coll:\s+dir one\s/m, 'ls of the root lists "dir one" as a collection');
unlike($out, qr/\.mirrordav/, 'ls never shows .mirrordav');

# copy (a file)
$out = cadaver('copy "dir one/data.bin" copy.bin');
succeeded($out, qr/Copying/, 'copy reported success');
is(sha1_file("$live/copy.bin") // '', $src_sha, 'copy: the copy is identical');
ok(-f "$live/dir one/data.bin", 'copy: the source is still there');

# move (a file)
$out = cadaver('move copy.bin "dir one/moved.bin"');
succeeded($out, qr/Moving/, 'move reported success');
ok(!-e "$live/copy.bin", 'move: the source is gone from disk');
is(sha1_file("$live/dir one/moved.bin") // '', $src_sha, 'move: the destination is identical');
is($srv->get('/dav/copy.bin')->{status}, 404, 'move: GET of the source is 404');

# get
$out = cadaver(qq{get "dir one/moved.bin" "$tmp/got.bin"});
succeeded($out, qr/Downloading/, 'get reported success');
ok(-f "$tmp/got.bin", 'get: the local file exists');
is(sha1_file("$tmp/got.bin"), $src_sha, 'get: downloaded bytes are identical');

# copy and move of a collection (Depth: infinity)
$out = cadaver('copy "dir one" "dir two"', 'move "dir two" "dir three"', 'ls "dir three"');
succeeded($out, qr/Copying/, 'copy of a collection reported success');
succeeded($out, qr/Moving/,  'move of a collection reported success');
ok(!-e "$live/dir two", 'the moved collection left its old name');
for my $f ('data.bin', 'moved.bin') {
    is(sha1_file("$live/dir three/$f") // '', $src_sha, "collection copy+move: $f identical");
    like($out, qr/^\s+\Q$f\E\s+${\(-s $src)}\s/m, "ls of the moved collection lists $f");
}
is(sha1_file("$live/dir one/data.bin") // '', $src_sha, 'the copied collection is intact');

# delete (a file) and rmcol (a collection)
$out = cadaver('delete "dir one/data.bin"', 'rmcol "dir three"', 'ls');
succeeded($out, qr/Deleting `dir one\/data\.bin'/, 'delete reported success');
ok(!-e "$live/dir one/data.bin", 'delete: the file is gone from disk');
is($srv->get('/dav/dir%20one/data.bin')->{status}, 404, 'delete: GET is 404');
succeeded($out, qr/Deleting collection `dir three'/, 'rmcol reported success');
ok(!-e "$live/dir three", 'rmcol: the collection is gone from disk');
ok(-f "$live/dir one/moved.bin", 'delete left the sibling alone');
my ($listing) = $out =~ /Listing collection `\/dav\/': succeeded\.\n(.*?)^dav:/ms;
$listing //= '';
like($listing, qr/^Coll:\s+dir one\s/m, 'final ls lists "dir one"');
unlike($listing, qr/dir three|copy\.bin|\.mirrordav/, 'final ls does not list removed names nor .mirrordav')
    or diag("cadaver output:\n$out");

# A failing command is reported as failed (the checks above can fail).
$out = cadaver('get nosuch.bin "' . "$tmp/nosuch.bin" . '"');
like($out, qr/failed:?\s*\n?.*404/s, 'get of a missing file fails with 404')
    or diag("cadaver output:\n$out");

done_testing;
