#!/usr/bin/env perl
# The served SHA-1 is tied to the bytes on disk (SPEC section 3): the
# sidecar record names its data by inode, size, mtime and ctime in
# nanoseconds, and where they no longer match the hash is unknown, never
# served.  (a) a file rewritten behind the server's back with its size and
# mtime kept; (b) the data replaced on disk (new inode) with the sidecar
# kept, as a crash between publish and record leaves it; (c) MOVE and COPY
# keep a correct hash, and never carry one that does not name the bytes,
# also while PUTs race them; (d) orphan hashed sidecars (*.hdb); (e) kill -9
# of the server amid PUTs and MOVEs: every SHA-1 served afterwards is the
# bytes', and fsck --repair restores all of them.
# MIRRORDAV_RACE_SECONDS (default 3) bounds each race loop;
# MIRRORDAV_CRASH_ROUNDS (default 5) sets the number of kills in (e).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use MirrorDAV::Test qw(sha1_file spew slurp);

my $s      = MirrorDAV::Test->start_server(fsync => 'Off');
my $live   = $s->live;
my $admin  = "$ENV{MIRRORDAV_BUILD}/mirrordav";
my $volume = $s->volume;
my $race_seconds = $ENV{MIRRORDAV_RACE_SECONDS} // 3;
my $crash_rounds = $ENV{MIRRORDAV_CRASH_ROUNDS} // 5;

sub props {
    my ($path) = @_;
    my $r = $s->propfind($path, 0, q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/><M:content-version/></D:prop></D:propfind>});
    my %p;
    $p{sha1}    = $1 if $r->{content} =~ m{<lp\d+:sha1>([^<]*)</lp\d+:sha1>};
    $p{version} = $1 if $r->{content} =~ m{<lp\d+:content-version>(\d+)</lp\d+:content-version>};
    $p{status}  = $r->{status};
    return \%p;
}

sub fsck {
    my (@args) = @_;
    my $out = `'$admin' fsck --volume '$volume' @args 2>&1`;
    return ($? >> 8, $out);
}

# mtime and ctime to the nanosecond, as stat(1) prints them.
sub times_of { my $t = `stat -c '%y|%z' '$_[0]'`; chomp $t; split /\|/, $t }

# Past the file system's timestamp granularity, so that a change of ctime
# made now is visible (not a speed assertion).
sub tick { sleep 0.05 }

# --- (a) rewritten in place, same size, mtime put back with touch -d
{
    my $f = "$live/a.bin";
    is $s->put('/dav/a.bin', 'A' x 4096)->{status}, 201, '(a) PUT a.bin';
    my $old = sha1_file($f);
    is props('/dav/a.bin')->{sha1}, $old, '(a) SHA-1 served after PUT';
    my ($mtime) = times_of($f);
    my @st = stat $f;
    tick();
    open my $fh, '+<:raw', $f or die "$f: $!";
    print $fh 'B' x 4096;
    close $fh;
    system('touch', '-m', '-d', $mtime, $f) == 0 or die 'touch';
    my @st2 = stat $f;
    my ($mtime2) = times_of($f);
    ok $st2[1] == $st[1] && $st2[7] == $st[7] && $mtime2 eq $mtime,
        '(a) same inode, size and mtime (to the ns) after the rewrite';
    isnt sha1_file($f), $old, '(a) ... but other bytes';
    my $p = props('/dav/a.bin');
    ok !defined $p->{sha1}, '(a) PROPFIND no longer serves the old SHA-1'
        or diag "served $p->{sha1}";
    ok defined $p->{version}, '(a) content-version still shown while the SHA-1 is unknown';
    my ($rc, $out) = fsck();
    is $rc, 1, '(a) fsck finds a problem';
    like $out, qr{^\Q$f\E\tidentity\treported$}m, '(a) fsck reports the identity mismatch'
        or diag $out;
    ($rc, $out) = fsck('--repair');
    is $rc, 0, '(a) fsck --repair resolves it' or diag $out;
    like $out, qr{^\Q$f\E\tidentity\trecomputed$}m, '(a) ... by recomputing' or diag $out;
    is props('/dav/a.bin')->{sha1}, sha1_file($f), '(a) the SHA-1 served is sha1sum of the bytes now';
    ($rc, $out) = fsck();
    is $rc, 0, '(a) fsck finds the volume clean afterwards' or diag $out;
}

# --- (b) crash between publish and record: new data (new inode), old sidecar
{
    my $f = "$live/b.bin";
    is $s->put('/dav/b.bin', 'one' x 1000)->{status}, 201, '(b) PUT b.bin';
    my $old = sha1_file($f);
    is props('/dav/b.bin')->{sha1}, $old, '(b) SHA-1 served';
    my @st = stat $f;
    tick();
    spew("$live/.b.new", 'two' x 1000);    # same size, other bytes
    system('touch', '-m', '-d', (times_of($f))[0], "$live/.b.new") == 0 or die;
    rename "$live/.b.new", $f or die "rename: $!";
    isnt((stat $f)[1], $st[1], '(b) the data is another inode now');
    is -s $f, $st[7], '(b) of the same size';
    my $p = props('/dav/b.bin');
    ok !defined $p->{sha1}, '(b) the SHA-1 property is unknown (not served)'
        or diag "served $p->{sha1}";
    my ($rc, $out) = fsck();
    like $out, qr{^\Q$f\E\tidentity\treported$}m, '(b) fsck reports it' or diag $out;
    ($rc, $out) = fsck('--repair');
    is $rc, 0, '(b) fsck --repair resolves it' or diag $out;
    is props('/dav/b.bin')->{sha1}, sha1_file($f), '(b) recomputed SHA-1 is sha1sum';
}

# --- (c) MOVE and COPY keep a correct SHA-1, and carry no wrong one
{
    $s->mkcol('/dav/c');
    is $s->put('/dav/c/f.bin', join('', map { chr } 0 .. 255) x 40)->{status}, 201, '(c) PUT';
    my $want = sha1_file("$live/c/f.bin");
    tick();
    my $r = $s->request('MOVE', '/dav/c/f.bin', { Destination => $s->url('/dav/c/moved.bin') });
    is $r->{status}, 201, '(c) MOVE';
    is props('/dav/c/moved.bin')->{sha1}, $want, '(c) the moved file keeps its SHA-1 (sha1sum)';
    tick();
    $r = $s->request('COPY', '/dav/c/moved.bin', { Destination => $s->url('/dav/c/copy.bin') });
    is $r->{status}, 201, '(c) COPY';
    is props('/dav/c/copy.bin')->{sha1}, sha1_file("$live/c/copy.bin"), '(c) the copy has its SHA-1 (sha1sum)';
    is props('/dav/c/moved.bin')->{sha1}, $want, '(c) ... and the source keeps its own';
    my $name = ('L' x 251) . '.bin';
    $r = $s->request('MOVE', '/dav/c/copy.bin', { Destination => $s->url("/dav/c/$name") });
    is $r->{status}, 201, '(c) MOVE to a hashed sidecar name';
    is props("/dav/c/$name")->{sha1}, $want, '(c) ... keeps the SHA-1';
    $r = $s->request('COPY', '/dav/c', { Destination => $s->url('/dav/c2'), Depth => 'infinity' });
    is $r->{status}, 201, '(c) COPY of the collection';
    is props("/dav/c2/$name")->{sha1}, $want, '(c) ... its members keep their SHA-1';
    $r = $s->request('MOVE', '/dav/c2', { Destination => $s->url('/dav/c3') });
    is props('/dav/c3/moved.bin')->{sha1}, $want, '(c) ... also after a MOVE of the collection';

    # A source rewritten behind the server's back: its record names other
    # bytes, so the destination must not get the old SHA-1 either.
    my $f = "$live/c/moved.bin";
    my ($mtime) = times_of($f);
    tick();
    open my $fh, '+<:raw', $f or die;
    print $fh 'Z' x 100;
    close $fh;
    system('touch', '-m', '-d', $mtime, $f) == 0 or die;
    $r = $s->request('COPY', '/dav/c/moved.bin', { Destination => $s->url('/dav/c/copy2.bin') });
    is $r->{status}, 201, '(c) COPY of the rewritten file';
    my $got = props('/dav/c/copy2.bin')->{sha1};
    ok !defined $got || $got eq sha1_file("$live/c/copy2.bin"),
        '(c) the copy never serves the old SHA-1' or diag "served $got";
    $r = $s->request('MOVE', '/dav/c/moved.bin', { Destination => $s->url('/dav/c/moved2.bin') });
    is $r->{status}, 201, '(c) MOVE of the rewritten file';
    $got = props('/dav/c/moved2.bin')->{sha1};
    ok !defined $got || $got eq sha1_file("$live/c/moved2.bin"),
        '(c) the moved file never serves the old SHA-1' or diag "served $got";

    # Races: PUTs of same-size, different bytes into the source while it
    # is copied and moved away.  Whatever interleaving happens, the
    # destination serves no SHA-1 but its own bytes'.
    for my $method ('COPY', 'MOVE') {
        $s->mkcol("/dav/race-$method");
        my $src = "/dav/race-$method/src.bin";
        $s->put($src, 'x' x 65536);
        my $pid = fork // die;
        if (!$pid) {
            my $end = time + $race_seconds;
            my $i = 0;
            $s->put($src, chr(65 + $i++ % 26) x 65536) while time < $end;
            exit 0;
        }
        my ($n, $checked, @wrong) = (0, 0);
        my $end = time + $race_seconds;
        while (time < $end) {
            my $dst = "/dav/race-$method/d" . $n++ . '.bin';
            my $r = $s->request($method, $src, { Destination => $s->url($dst) });
            next unless $r->{status} == 201;
            my $got = props($dst)->{sha1} // next;
            $checked++;
            (my $rel = $dst) =~ s{^/dav}{};
            my $disk = sha1_file("$live$rel") // "(none)";
            push @wrong, "$dst served $got, holds $disk" if $got ne $disk;
        }
        waitpid $pid, 0;
        is_deeply \@wrong, [], "(c) $method racing PUTs: no destination serves a SHA-1 of other bytes ($checked checked of $n)";
    }
}

# --- (d) orphan hashed sidecars
{
    $s->mkcol('/dav/d');
    my $keep = ('k' x 251) . '.txt';
    my $gone = ('g' x 251) . '.txt';
    is $s->put("/dav/d/$keep", 'keep')->{status}, 201, '(d) PUT a 255-byte name';
    is $s->put("/dav/d/$gone", 'gone')->{status}, 201, '(d) PUT another';
    my @hdb = glob "$live/d/.mirrordav/*.hdb";
    is scalar(@hdb), 2, '(d) two hashed sidecars';
    my %hdb;
    for my $h (@hdb) {
        my $db = slurp($h);
        $hdb{$db =~ /kkkk/ ? 'keep' : 'gone'} = $h;
    }
    unlink "$live/d/$gone" or die;    # the data goes behind the server's back
    my ($rc, $out) = fsck();
    is $rc, 1, '(d) fsck finds a problem';
    like $out, qr{^\Q$hdb{gone}\E\torphan\treported$}m, '(d) the orphan *.hdb is reported' or diag $out;
    unlike $out, qr{\Q$hdb{keep}\E}, '(d) the one whose file exists is not';
    ($rc, $out) = fsck('--repair');
    is $rc, 0, '(d) fsck --repair resolves it' or diag $out;
    ok !-e $hdb{gone}, '(d) the orphan is removed';
    ok -e $hdb{keep}, '(d) the sidecar of the existing long name is kept';
    like props("/dav/d/$keep")->{sha1} // '', qr/^[0-9a-f]{40}$/, '(d) ... and still serves its SHA-1';
}

# --- (e) kill -9 amid PUTs (same size, other bytes) and MOVEs
{
    $s->mkcol('/dav/e');
    $s->put("/dav/e/f$_.bin", 'e' x 32768) for 0 .. 9;
    for my $round (1 .. $crash_rounds) {
        my $pid = fork // die;
        if (!$pid) {
            my $i = 0;
            while (1) {
                my ($a, $b) = (int rand 10, int rand 10);
                if ($i++ % 3) {
                    $s->put("/dav/e/f$a.bin", chr(97 + $i % 26) x 32768);
                } else {
                    $s->request('MOVE', "/dav/e/f$a.bin", { Destination => $s->url("/dav/e/f$b.bin") });
                }
            }
        }
        sleep 0.2 + rand 0.8;
        $s->crash;
        kill 'KILL', $pid;
        waitpid $pid, 0;
        $s->restart;
        my @wrong;
        for my $f (sort glob "$live/e/*.bin") {
            (my $name = $f) =~ s{.*/}{};
            my $got = props("/dav/e/$name")->{sha1} // next;
            my $disk = sha1_file($f);
            push @wrong, "$name served $got, holds $disk" if $got ne $disk;
        }
        is_deeply \@wrong, [], "(e) crash $round: no SHA-1 served for other bytes";
        my ($rc, $out) = fsck('--repair');
        is $rc, 0, "(e) crash $round: fsck --repair resolves everything" or diag $out;
        my @missing = grep {
            (my $name = $_) =~ s{.*/}{};
            (props("/dav/e/$name")->{sha1} // '') ne sha1_file($_)
        } glob "$live/e/*.bin";
        is_deeply \@missing, [], "(e) crash $round: every file serves its SHA-1 after the repair";
    }
}

done_testing;
