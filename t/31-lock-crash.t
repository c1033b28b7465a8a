#!/usr/bin/env perl
# The lock database survives crashes and never forgets a lock silently.
#
#  1. A corrupt lock database (garbage over it, truncated, emptied, one
#     malformed record) is reported in the log, naming the file, and fails
#     closed: a write that needs its locks gets a 500, never a 2xx that
#     ignores a lock; restoring the file brings every lock back.
#  2. The lock file's contents are never trusted: a stale one (as a power
#     loss could leave next to a newer database) does not hide locks.
#  3. kill -9 of the whole httpd at random instants while three clients
#     LOCK, refresh and UNLOCK files, collections and members (depth 0 and
#     infinity, shared and exclusive).  After each restart: every lock
#     whose LOCK was answered 200/201 and not unlocked is enforced (423
#     without its token, success with it), every lock whose UNLOCK was
#     answered 204 is gone, no other lock appears (a LOCK or UNLOCK cut off
#     by the crash may have happened or not: lockdiscovery decides, by the
#     owner each LOCK carries), and the database opens cleanly.
#
# Environment: MIRRORDAV_LOCK_CRASH_KILLS (default 30) sets the number of
# kills, for a longer soak; MIRRORDAV_LOCK_CRASH_SEED replays a run (the
# seed is printed).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use Fcntl qw(O_WRONLY O_APPEND O_CREAT);
use GDBM_File;
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);
use MirrorDAV::Test qw(slurp spew);

my $KILLS = $ENV{MIRRORDAV_LOCK_CRASH_KILLS} // 30;
my $SEED  = $ENV{MIRRORDAV_LOCK_CRASH_SEED}  // (time() * 1000 % 1000003);
diag("seed $SEED (MIRRORDAV_LOCK_CRASH_SEED=$SEED replays), $KILLS kills");
srand($SEED);

my $srv = MirrorDAV::Test->start_server;
my $live = $srv->live;
my $db   = $srv->volume . '/state/locks.gdbm';

# One request, sent in one write on its own connection (HTTP::Tiny's
# separate writes of head and body meet delayed ACKs: 40 ms a request).
sub req {
    my ($method, $path, $h, $body) = @_;
    return $srv->raw_request($method, $path, $h, $body);
}

sub lockinfo {
    my ($scope, $owner) = @_;
    return qq{<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:">}
         . qq{<D:lockscope><D:$scope/></D:lockscope><D:locktype><D:write/></D:locktype>}
         . qq{<D:owner>$owner</D:owner></D:lockinfo>};
}

sub do_lock {
    my ($path, %o) = @_;
    my $r = req('LOCK', $path, { 'Content-Type' => 'application/xml',
                                 Depth => $o{depth} // '0',
                                 Timeout => 'Second-86400' },
                lockinfo($o{scope} // 'exclusive', $o{owner} // 'test'));
    my $t = $r->{headers}{'lock-token'} // '';
    $t =~ s/^\s*<|>\s*$//g;
    return ($r->{status}, $t);
}

sub ok2xx { $_[0] >= 200 && $_[0] < 300 }

my $PROPPATCH = '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
              . '<D:set><D:prop><Z:x>1</Z:x></D:prop></D:set></D:propertyupdate>';

# ------------------------------------------------------------ 1. corruption
{
    is(req('MKCOL', '/dav/k')->{status}, 201, 'MKCOL /dav/k');
    is(req('MKCOL', '/dav/k/c')->{status}, 201, 'MKCOL /dav/k/c');
    for my $f (qw(k/a.txt k/b.txt k/c/m.txt k/free.txt)) {
        ok(ok2xx(req('PUT', "/dav/$f", {}, 'v0')->{status}), "PUT $f");
    }
    my ($st, $ta) = do_lock('/dav/k/a.txt');
    is($st, 200, 'exclusive lock on a.txt');
    my ($st2, $tc) = do_lock('/dav/k/c', depth => 'infinity', scope => 'shared');
    is($st2, 200, 'shared depth-infinity lock on c/');
    ok(-s $db, 'the lock database exists');
    my $good = slurp($db);

    my @cases = (
        [ 'garbage written over it', sub { spew($db, "\xffnot GDBM\x00" x 700) } ],
        [ 'truncated to half',       sub { truncate($db, int(length($good) / 2)) or die } ],
        [ 'truncated to 100 bytes',  sub { truncate($db, 100) or die } ],
        [ 'emptied',                 sub { truncate($db, 0) or die } ],
    );
    for my $c (@cases) {
        my ($what, $break) = @$c;
        my $log0 = length $srv->error_log;
        $break->();
        my $r = req('PUT', '/dav/k/a.txt', {}, 'no token');
        is($r->{status}, 500, "$what: PUT of a locked file without its token: 500");
        like($r->{content}, qr/lock database cannot be read/, "$what: the body names the cause");
        is(req('PUT', '/dav/k/c/m.txt', {}, 'no token')->{status}, 500,
           "$what: PUT of a member of a locked collection: 500");
        is(req('PUT', '/dav/k/free.txt', {}, 'x')->{status}, 500,
           "$what: an unlocked file cannot be told from a locked one: 500");
        is((do_lock('/dav/k/b.txt'))[0], 500, "$what: LOCK: 500");
        is(req('UNLOCK', '/dav/k/a.txt', { 'Lock-Token' => "<$ta>" })->{status}, 500,
           "$what: UNLOCK: 500, the lock stays");
        is(slurp("$live/k/a.txt"), 'v0', "$what: the locked file is unchanged");
        like(substr($srv->error_log, $log0),
             qr{lock database \Q$db\E is unusable}, "$what: the log names the file");
        my @aside = glob("$db.corrupt-*");
        ok(!@aside && -e $db, "$what: the database was not moved aside");
        spew($db, $good);
        is(req('PUT', '/dav/k/a.txt', {}, 'no token')->{status}, 423,
           "$what: restored: the lock on a.txt is enforced");
        is(req('PUT', '/dav/k/c/m.txt', {}, 'no token')->{status}, 423,
           "$what: restored: the lock on c/ is enforced");
    }

    # One malformed record fails closed for what it may lock (the resource
    # and its members), not for the rest.
    {
        my %h;
        tie(%h, 'GDBM_File', $db, &GDBM_WRITER | &GDBM_NOLOCK, 0640)
            or die "tie $db: $!";
        ok(exists $h{'/k/c'}, "c/'s record is keyed /k/c");
        $h{'/k/c'} = "\x01garbage";
        untie %h;
    }
    my $log0 = length $srv->error_log;
    is(req('PUT', '/dav/k/c/m.txt', {}, 'x')->{status}, 500,
       'malformed record of c/: PUT of its member: 500');
    is(req('PROPPATCH', '/dav/k/c', { 'Content-Type' => 'application/xml' }, $PROPPATCH)->{status}, 500,
       '... PROPPATCH of c/ itself: 500');
    is(req('UNLOCK', '/dav/k/c', { 'Lock-Token' => "<$tc>" })->{status}, 500,
       '... UNLOCK of its lock: 500');
    like(substr($srv->error_log, $log0), qr{lock database \Q$db\E is unusable \(the record of /k/c is malformed\)},
         '... logged with the file and the record');
    is(req('PUT', '/dav/k/a.txt', {}, 'x')->{status}, 423, '... a.txt stays locked');
    ok(ok2xx(req('PUT', '/dav/k/free.txt', {}, 'x')->{status}), '... an unrelated file is writable');
    my ($sb, $tb) = do_lock('/dav/k/b.txt');
    is($sb, 200, '... and lockable');
    is(req('UNLOCK', '/dav/k/b.txt', { 'Lock-Token' => "<$tb>" })->{status}, 204, '... and unlockable');
    {
        my %h;
        tie(%h, 'GDBM_File', $db, &GDBM_READER | &GDBM_NOLOCK, 0) or die "tie $db: $!";
        is($h{'/k/c'}, "\x01garbage", 'the malformed record was carried over, not dropped');
        untie %h;
    }
    spew($db, $good);
    is(req('UNLOCK', '/dav/k/c', { 'Lock-Token' => "<$tc>" })->{status}, 204, 'restored: UNLOCK c/');
    is(req('UNLOCK', '/dav/k/a.txt', { 'Lock-Token' => "<$ta>" })->{status}, 204, 'UNLOCK a.txt');
    ok(!-e $db, 'the last UNLOCK removes the database');
    ok(ok2xx(req('PUT', '/dav/k/a.txt', {}, 'free')->{status}), 'no database, no locks');
}

# ------------------------------------------------------------ 2. lock file
{
    my $lockfile = $srv->volume . '/state/locks.lock';
    my ($s1, $t1) = do_lock('/dav/k/b.txt');
    is(req('UNLOCK', '/dav/k/b.txt', { 'Lock-Token' => "<$t1>" })->{status}, 204, 'LOCK and UNLOCK b.txt');
    my $before = slurp($lockfile) // '';
    my ($s2, $t2) = do_lock('/dav/k/a.txt');
    is($s2, 200, 'LOCK a.txt');
    # A power loss may keep an older lock file next to the newer database
    # (its writes are not synced): crash, and put the older one back.
    crash_now();
    spew($lockfile, $before);
    restart_after_crash();
        is(req('PUT', '/dav/k/a.txt', {}, 'x')->{status}, 423,
       'with a stale lock file the lock is still enforced');
    is(req('UNLOCK', '/dav/k/a.txt', { 'Lock-Token' => "<$t2>" })->{status}, 204, 'UNLOCK a.txt');
}

# ------------------------------------------------------------ 3. kill -9
# On a fresh volume, so that nothing above shapes it.
$srv->stop;
undef $srv;
$srv  = MirrorDAV::Test->start_server;
$live = $srv->live;
$db   = $srv->volume . '/state/locks.gdbm';
my $W = 3;
my (@res, %kind, %parent);    # resources, 'f' (file) or 'c' (collection)
is(req('MKCOL', '/dav/crash')->{status}, 201, 'MKCOL /dav/crash');
for my $w (0 .. $W - 1) {
    req('MKCOL', "/dav/crash/w$w");
    for my $j (0 .. 1) {
        my $c = "/dav/crash/w$w/c$j";
        req('MKCOL', $c);
        push @{ $res[$w] }, $c;
        $kind{$c} = 'c';
        for my $m (0 .. 1) {
            req('PUT', "$c/m$m", {}, 'm');
            push @{ $res[$w] }, "$c/m$m";
            $kind{"$c/m$m"} = 'f';
            $parent{"$c/m$m"} = $c;
        }
    }
    for my $i (0 .. 2) {
        req('PUT', "/dav/crash/w$w/f$i", {}, 'f');
        push @{ $res[$w] }, "/dav/crash/w$w/f$i";
        $kind{"/dav/crash/w$w/f$i"} = 'f';
    }
}
is(scalar(grep { -e "$live/" . substr($_, 5) } map { @$_ } @res), 9 * $W, 'the resources exist');

my $jdir = File::Temp::tempdir('lockcrash-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my %held;    # token -> { res, scope, depth, id }: answered, not unlocked
my %gone;    # tokens whose UNLOCK was answered 204
my $next_id = 0;

# One client: LOCK, refresh and UNLOCK its own resources until killed,
# journalling each request before it is sent and its answer after.
sub client {
    my ($w, $round) = @_;
    srand($SEED + 1000 * $round + $w);
    sysopen(my $j, "$jdir/$round-$w", O_WRONLY | O_APPEND | O_CREAT) or die;
    my $log = sub { syswrite($j, join(' ', @_) . "\n") };
    my %mine = map { $_ => $held{$_} } grep { $held{$_}{w} == $w } keys %held;
    for (my $n = 0; ; $n++) {
        my $res = $res[$w][int rand @{ $res[$w] }];
        my @on = grep { $mine{$_}{res} eq $res } sort keys %mine;
        my $op = !@on ? 'L' : (qw(L R U U))[int rand 4];
        if ($op eq 'L') {
            my $scope = rand() < 0.5 ? 'shared' : 'exclusive';
            my $depth = $kind{$res} eq 'c' && rand() < 0.6 ? 'infinity' : '0';
            my $id = "id-$round-$w-$n";
            $log->('L', $id, $res, $scope, $depth);
            my $r = req('LOCK', $res, { 'Content-Type' => 'application/xml',
                                        Depth => $depth, Timeout => 'Second-86400' },
                        lockinfo($scope, $id));
            my $t = $r->{headers}{'lock-token'} // '-';
            $t =~ s/^\s*<|>\s*$//g;
            $log->('l', $id, $r->{status}, $t);
            $mine{$t} = { res => $res, w => $w }
                if $r->{status} == 200 || $r->{status} == 201;
        }
        elsif ($op eq 'R') {
            my $t = $on[int rand @on];
            $log->('R', $t);
            my $r = req('LOCK', $res, { If => "(<$t>)", Timeout => 'Second-86400',
                                        Depth => '0' });
            $log->('r', $t, $r->{status});
        }
        else {
            my $t = $on[int rand @on];
            $log->('U', $t);
            my $r = req('UNLOCK', $res, { 'Lock-Token' => "<$t>" });
            $log->('u', $t, $r->{status});
            delete $mine{$t} if $r->{status} == 204;
        }
    }
}

# Kills the whole server at once, as MirrorDAV::Test's crash() does, and
# waits until its port is free again.  (crash() waits for every process
# of the group to be reaped, which here can take long: no init reaps the
# zombies.  Nor is a zombie leader enough: its other threads, say in an
# fsync, may still hold the listening socket, whose backlog would accept
# the next connection and never answer it.)
sub crash_now {
    my $pg = $srv->{pid};
    kill 'KILL', -$pg;
    waitpid($pg, 0);
    delete $srv->{pid};
    for (1 .. 500) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $srv->port,
                                      Proto => 'tcp', ReuseAddr => 1, Listen => 1);
        if ($s) { close $s; return }
        sleep 0.01;
    }
    die "the port of the killed server stays in use";
}

# Restarts after a crash.  While the server is down, its port is free for
# the whole machine: another program's outgoing connection can take it for
# a moment, so a failed start is retried.
sub restart_after_crash {
    for my $try (1 .. 20) {
        if (eval { $srv->restart; 1 }) {
            # Ours, and still running (not a server that lost the race
            # for the port to someone else)?
            my $r = HTTP::Tiny->new(timeout => 10)->request('OPTIONS', $srv->url('/dav/'));
            return if $r->{status} == 200 && ($r->{headers}{dav} // '') =~ /2/
                && waitpid($srv->pid, POSIX::WNOHANG()) == 0;
            $@ = "OPTIONS: $r->{status}";
            crash_now();
        }
        note("restart $try failed: $@");
        delete $srv->{pid};
        sleep 0.25;
    }
    die "httpd does not start again";
}

# Answers a crash can produce for a request in flight (no answer, or the
# connection cut): these leave the outcome open.
sub cut_off { $_[0] == 599 || $_[0] >= 500 }

sub discovery {
    # resource -> [ { token, id, depth } ] as lockdiscovery shows them
    my %out;
    for my $w (0 .. $W - 1) {
        for my $dir ("/dav/crash/w$w", "/dav/crash/w$w/c0", "/dav/crash/w$w/c1") {
            my $r = req('PROPFIND', $dir, { Depth => 1, 'Content-Type' => 'application/xml' },
                '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>');
            die "PROPFIND $dir: $r->{status}" unless $r->{status} == 207;
            for my $resp ($r->{content} =~ m{<D:response\b.*?</D:response>}gs) {
                my ($href) = $resp =~ m{<D:href>([^<]+)</D:href>};
                $href =~ s{^https?://[^/]+}{};
                $href =~ s{/$}{};
                my @locks;
                for my $al ($resp =~ m{<D:activelock>.*?</D:activelock>}gs) {
                    my ($t) = $al =~ m{<D:locktoken>\s*<D:href>\s*([^<\s]+)\s*</D:href>}s;
                    my ($id) = $al =~ m{(id-\d+-\d+-\d+)};
                    my ($d) = $al =~ m{<D:depth>([^<]+)</D:depth>};
                    push @locks, { token => $t, id => $id // '?', depth => lc($d // '') };
                }
                $out{$href} = \@locks;
            }
        }
    }
    return \%out;
}

# The locks that cover RES, given a token -> lock map.
sub covering {
    my ($res, $locks) = @_;
    return grep {
        my $l = $locks->{$_};
        $l->{res} eq $res
            || ($l->{depth} eq 'infinity' && index($res, "$l->{res}/") == 0)
    } keys %$locks;
}

my ($failures, $t_start) = (0, time);
for my $round (1 .. $KILLS) {
    my @pids;
    for my $w (0 .. $W - 1) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            eval { client($w, $round) };
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    sleep(0.05 + rand 0.5);
    crash_now();
    kill 'KILL', @pids;
    waitpid($_, 0) for @pids;

    # Replay the journals: what was answered, and what was cut off.
    my (%pend_lock, %pend_unlock, @bad);
    for my $w (0 .. $W - 1) {
        open my $fh, '<', "$jdir/$round-$w" or next;
        my %sent;
        while (my $line = <$fh>) {
            chomp $line;
            my @f = split ' ', $line;
            if ($f[0] eq 'L') {
                $sent{ $f[1] } = { res => $f[2], scope => $f[3], depth => $f[4], w => $w, id => $f[1] };
                $pend_lock{ $f[1] } = $sent{ $f[1] };
            }
            elsif ($f[0] eq 'l') {
                my ($id, $st, $t) = @f[1 .. 3];
                next if cut_off($st);
                delete $pend_lock{$id};
                if ($st == 200 || $st == 201) {
                    $held{$t} = { %{ $sent{$id} }, token => $t };
                }
                elsif ($st != 423 && $st != 207) {
                    push @bad, "LOCK $sent{$id}{res} answered $st";
                }
            }
            elsif ($f[0] eq 'U') {
                $pend_unlock{ $f[1] } = 1;
            }
            elsif ($f[0] eq 'u') {
                my ($t, $st) = @f[1, 2];
                next if cut_off($st);
                delete $pend_unlock{$t};
                if ($st == 204) { delete $held{$t}; $gone{$t} = 1 }
                else { push @bad, "UNLOCK of held lock $t answered $st" }
            }
            elsif ($f[0] eq 'r') {
                my ($t, $st) = @f[1, 2];
                push @bad, "refresh of held lock $t answered $st"
                    unless $st == 200 || cut_off($st);
            }
        }
    }

    restart_after_crash();
    my $log0 = length $srv->error_log;

    # The database opens cleanly and holds well-formed records only.
    if (-e $db) {
        my %h;
        if (tie(%h, 'GDBM_File', $db, &GDBM_READER | &GDBM_NOLOCK, 0)) {
            for my $k (keys %h) {
                push @bad, "record $k malformed" unless substr($h{$k}, 0, 1) eq "\x01";
            }
            untie %h;
        }
        else { push @bad, "the database does not open: $!" }
    }
    my @aside = glob("$db.corrupt-*");
    push @bad, 'a database was moved aside' if @aside;

    # Resolve what the crash left open, by lockdiscovery.
    my $disc = discovery();
    my %shown;    # token -> lock as shown on its own resource
    for my $res (keys %$disc) {
        for my $l (@{ $disc->{$res} }) {
            $shown{ $l->{token} } //= { %$l, seen_on => $res };
        }
    }
    for my $p (values %pend_lock) {
        my ($t) = grep { $shown{$_}{id} eq $p->{id} } keys %shown;
        $held{$t} = { %$p, token => $t } if $t;    # it happened
    }
    for my $t (keys %pend_unlock) {
        next if !$held{$t} || $shown{$t};
        delete $held{$t};                        # it happened
        $gone{$t} = 1;
    }
    for my $t (keys %shown) {
        push @bad, "lock $t ($shown{$t}{id}) on $shown{$t}{seen_on} was never granted"
            unless $held{$t};
        push @bad, "lock $t was unlocked (204) but is back" if $gone{$t};
    }
    # Every resource shows exactly the locks that cover it.
    for my $res (map { @$_ } @res) {
        my @want = sort(covering($res, \%held));
        my @got  = sort map { $_->{token} } @{ $disc->{$res} // [] };
        push @bad, "$res shows [@got], expected [@want]" unless "@want" eq "@got";
    }

    # Enforcement: 423 without a token, success with one.
    for my $res (map { @$_ } @res) {
        my @cov = covering($res, \%held);
        my ($m, $body, $h) = $kind{$res} eq 'f'
            ? ('PUT', "r$round", {})
            : ('PROPPATCH', $PROPPATCH, { 'Content-Type' => 'application/xml' });
        my $r = req($m, $res, $h, $body);
        if (@cov) {
            push @bad, "$m $res without a token: $r->{status}, expected 423" unless $r->{status} == 423;
            $r = req($m, $res, { %$h, If => join(' ', map { "(<$_>)" } @cov) }, $body);
            push @bad, "$m $res with its token: $r->{status}" unless ok2xx($r->{status});
        }
        else {
            push @bad, "$m $res unlocked: $r->{status}" unless ok2xx($r->{status});
        }
    }
    my @errs = grep { /is unusable|AH00052/ } split /\n/, substr($srv->error_log, $log0);
    push @bad, @errs;

    my %per;
    $per{ $_->{res} }++ for values %held;
    ok(!@bad, sprintf('kill %d: %d locks held, %d resources locked, %d unlocks confirmed so far',
                      $round, scalar(keys %held), scalar(keys %per), scalar(keys %gone)))
        or diag(join "\n", @bad[0 .. ($#bad < 20 ? $#bad : 19)]);
    $failures++ if @bad;
    last if $failures >= 3;
}
ok(scalar(keys %gone) > 0, 'some UNLOCKs were answered across the kills');
note(sprintf('%d kills in %.1f s', $KILLS, time - $t_start));

# Everything unlocked: the database goes away.
for my $t (keys %held) {
    my $r = req('UNLOCK', $held{$t}{res}, { 'Lock-Token' => "<$t>" });
    is($r->{status}, 204, "final UNLOCK of $held{$t}{res}") if $r->{status} != 204;
}
ok(!-e $db, 'with every lock released the database is gone');
unlike($srv->error_log, qr/AH00052|Segmentation fault/, 'no httpd child crashed');

done_testing;
