package MirrorDAV::CrashTree;

# Trees for the crash tests (t/22, t/25): built once over HTTP, so that
# every file has its SHA-1 record and a sample has dead properties, and
# then described as the server serves them, so that a tree after a crash
# can be compared with what it must be, exactly.

use strict;
use warnings;
use Exporter 'import';
use Digest::SHA ();
use File::Temp ();
use IO::Socket::INET ();
use Time::HiRes ();

our @EXPORT_OK = qw(build_tree tree_signature content_of crash_server);

# A kill -9 test is about the death of the process, not of the machine:
# what reached the page cache survives it, on any file system.  The crash
# tests therefore keep their volume on tmpfs when there is one, where the
# thousands of files they lay out and copy each round cost a tenth of
# what they cost on the disk (MIRRORDAV_CRASH_TMPDIR chooses another
# place).  Call before starting the server.
sub use_fast_tmpdir {
    my $dir = $ENV{MIRRORDAV_CRASH_TMPDIR} // (-d '/dev/shm' && -w _ ? '/dev/shm' : undef);
    $ENV{TMPDIR} = $dir if defined $dir;
}

# As MirrorDAV::Test::crash, but done once every process of the server is
# dead or a zombie (a zombie holds no file or lock; whoever reaps it may
# take its time).
sub crash_server {
    my ($s) = @_;
    my $pgid = $s->{pid};
    kill 'KILL', -$pgid;
    waitpid($pgid, 0);
    # Gone means every thread gone, not only the first: a killed
    # process's first thread turns zombie while another (an event MPM
    # worker in fsync, say) is still inside a system call with the
    # process's descriptors open, and so its flocks held (a restart's
    # recovery would skip the journal they lock).  A zombie nobody reaps
    # (a traced child whose strace died) counts as gone.
    for (1 .. 500) {
        my $alive = 0;
        for my $stat (glob '/proc/[0-9]*/stat') {
            open my $fh, '<', $stat or next;
            my $line = <$fh> // next;
            my ($pgrp) = $line =~ /^\d+ \(.*\) \S \d+ (\d+)/ or next;
            next unless $pgrp == $pgid;
            my ($pid) = $stat =~ m{^/proc/(\d+)/};
            for my $t (glob "/proc/$pid/task/*/stat") {
                open my $th, '<', $t or next;
                my $tl = <$th> // next;
                my ($state) = $tl =~ /^\d+ \(.*\) (\S)/ or next;
                $alive++ if $state ne 'Z' && $state ne 'X';
            }
        }
        last unless $alive;
        Time::HiRes::sleep(0.01);
    }
    # And its listening socket closed: a restart must bind the port
    # itself, not find the killed server's backlog answering the connect
    # that tells it the new one is up (liveness bound, generous).
    for (1 .. 3000) {
        my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $s->{port},
                                      Timeout => 1) or last;
        close $c;
        die "a process of the killed server still listens on port $s->{port}\n" if $_ == 3000;
        Time::HiRes::sleep(0.01);
    }
    delete $s->{pid};
}


my $PROPS = q{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:x-crash:" xmlns:M="http://mirrordav.org/ns"><D:prop><D:resourcetype/><Z:tag/><M:sha1/></D:prop></D:propfind>};

# The content of file F of folder D in a tree whose files say KIND.
sub content_of { my ($kind, $d, $f) = @_; return "$kind $d/$f\n" x $f }

# build_tree(SERVER, TOP, KIND, DIRS, FILES): TOP/dD/fF.txt for D in
# 1..DIRS, F in 1..FILES; a dead property Z:tag on TOP, on each folder and
# on every tenth file, all with values naming KIND and the place.
sub build_tree {
    my ($s, $top, $kind, $dirs, $files) = @_;
    my $tmp = File::Temp::tempdir('crash-tree-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    open my $cfg, '>', "$tmp/put.cfg" or die;
    open my $pp,  '>', "$tmp/proppatch.cfg" or die;
    my $n = 0;
    $s->mkcol($top) ->{status} == 201 or die "MKCOL $top";
    my $proppatch = sub {
        my ($url, $value) = @_;
        print $pp "next\n" if $n;
        print $pp qq{url = "$url"\nrequest = "PROPPATCH"\nheader = "Content-Type: application/xml"\n}
                . qq{data = "<?xml version=\\"1.0\\"?><D:propertyupdate xmlns:D=\\"DAV:\\" xmlns:Z=\\"urn:x-crash:\\"><D:set><D:prop><Z:tag>$value</Z:tag></D:prop></D:set></D:propertyupdate>"\n}
                . "output = /dev/null\nwrite-out = \"%{http_code}\\n\"\n";
        $n++;
    };
    $proppatch->($s->url($top), "$kind-root");
    for my $d (1 .. $dirs) {
        $s->mkcol("$top/d$d")->{status} == 201 or die "MKCOL $top/d$d";
        $proppatch->($s->url("$top/d$d"), "$kind-d$d");
        for my $f (1 .. $files) {
            open my $fh, '>', "$tmp/$d-$f" or die;
            print $fh content_of($kind, $d, $f);
            close $fh;
            print $cfg qq{upload-file = "$tmp/$d-$f"\nurl = "${\$s->url("$top/d$d/f$f.txt")}"\n};
            $proppatch->($s->url("$top/d$d/f$f.txt"), "$kind-$d-$f") if $f % 10 == 1;
        }
    }
    close $cfg;
    close $pp;
    my $codes = `curl -s -o /dev/null -w '%{http_code}\\n' -K '$tmp/put.cfg'`;
    my $puts = grep { $_ eq '201' } split /\n/, $codes;
    die "only $puts of ${\($dirs * $files)} PUTs answered 201" unless $puts == $dirs * $files;
    $codes = `curl -s -K '$tmp/proppatch.cfg'`;
    my $pps = grep { $_ eq '207' } split /\n/, $codes;
    die "only $pps of $n PROPPATCHes answered 207" unless $pps == $n;
}

# What the server serves of TOP: relative path => "tag=...;sha1=..." for
# the tree's root (''), its folders and their files; undef if TOP is not
# there.  One Depth 1 PROPFIND per folder.
sub tree_signature {
    my ($s, $top) = @_;
    my %sig;
    my @todo = ('');
    while (defined(my $rel = shift @todo)) {
        my $r = $s->propfind($top . ($rel eq '' ? '' : "/$rel"), 1, $PROPS);
        return undef if $r->{status} == 404 && $rel eq '';
        die "PROPFIND $top/$rel: $r->{status}" unless $r->{status} == 207;
        for my $resp ($r->{content} =~ m{<D:response\b[^>]*>(.*?)</D:response>}gs) {
            my ($href) = $resp =~ m{<D:href>(.*?)</D:href>}s or next;
            $href =~ s{/$}{};
            my ($path) = $href =~ m{^\Q$top\E/?(.*)$} or die "href $href outside $top";
            my ($tag, $sha) = ('', '');
            for my $ps ($resp =~ m{<D:propstat>(.*?)</D:propstat>}gs) {
                next unless $ps =~ m{<D:status>HTTP/1\.1 200};
                $tag = $1 if $ps =~ m{<(?:\w+:)?tag\b[^>]*>(.*?)</(?:\w+:)?tag>}s;
                $sha = $1 if $ps =~ m{<(?:\w+:)?sha1\b[^>]*>([0-9a-f]{40})</(?:\w+:)?sha1>}s;
            }
            $sig{$path} = "tag=$tag;sha1=$sha";
            push @todo, $path if $path ne $rel && $resp =~ m{<D:collection\s*/>};
        }
    }
    return \%sig;
}

1;
