"""SRT next to RTMP, edge CPU per GB (docs/benchmarks.md, "SRT next to RTMP").

Usage, from a directory holding in.ts and in.flv (the same 20 s encode, see the docs):
    python3 cpu_per_gb.py <release streamfleet-edge> <examples/livestreams.yaml> [PHASES]
PHASES (default all): a comma-separated subset of ingest, play-rtmp, play-srt; e.g.
`play-srt` alone to compare two edge builds on SRT playback.
Binds 127.0.0.1 only; starts and stops its own edge and ffmpeg processes.
"""
import json, os, subprocess, sys, time, urllib.request
EDGE = sys.argv[1]
STREAMS = sys.argv[2]
HZ = os.sysconf('SC_CLK_TCK')
def cpu(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ
def get(path):
    return urllib.request.urlopen(f'http://127.0.0.1:29190{path}', timeout=5).read().decode()
def metric(name):
    tot = 0.0
    for l in get('/metrics').splitlines():
        if l.startswith(name + ' ') or l.startswith(name + '{'):
            tot += float(l.rsplit(' ', 1)[1])
    return tot
def stream():
    for s in json.loads(get('/api/v1/streams'))['streams']:
        if s['playback_name'] == 'demo':
            return s
def start_edge():
    p = subprocess.Popen([EDGE, '--streams', STREAMS, '--rtmp-listen', '127.0.0.1:21995', '--http-listen', '127.0.0.1:29190',
                          '--relay-listen', '127.0.0.1:21996', '--srt-listen', '127.0.0.1:28990', '--worker-threads', '1'],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    return p
def ingest(proto):
    edge = start_edge()
    if proto == 'rtmp':
        cmd = ['ffmpeg', '-loglevel', 'error', '-re', '-i', 'in.flv', '-c', 'copy', '-f', 'flv', 'rtmp://127.0.0.1:21995/live/demo-publish-key']
    else:
        cmd = ['ffmpeg', '-loglevel', 'error', '-re', '-i', 'in.ts', '-c', 'copy', '-f', 'mpegts', 'srt://127.0.0.1:28990?streamid=publish:demo-publish-key']
    c0 = cpu(edge.pid)
    subprocess.run(cmd, timeout=60)
    time.sleep(0.5)
    c1 = cpu(edge.pid)
    b = metric('streamfleet_edge_bytes_received_total') if proto == 'rtmp' else None
    edge.terminate(); edge.wait()
    return c1 - c0, b
def play(proto, n):
    edge = start_edge()
    pub = subprocess.Popen(['ffmpeg', '-loglevel', 'error', '-re', '-stream_loop', '1', '-i', 'in.flv', '-c', 'copy', '-f', 'flv', 'rtmp://127.0.0.1:21995/live/demo-publish-key'])
    time.sleep(3)
    url = 'rtmp://127.0.0.1:21995/live/demo' if proto == 'rtmp' else 'srt://127.0.0.1:28990?streamid=read:demo'
    players = [subprocess.Popen(['ffmpeg', '-loglevel', 'error', '-i', url, '-c', 'copy', '-f', 'null', '-'], stdin=subprocess.DEVNULL) for _ in range(n)]
    time.sleep(3)
    c0, b0 = cpu(edge.pid), metric('streamfleet_edge_bytes_sent_total')
    time.sleep(20)
    c1, b1 = cpu(edge.pid), metric('streamfleet_edge_bytes_sent_total')
    alive = sum(p.poll() is None for p in players)
    for p in players + [pub]:
        p.kill(); p.wait()
    edge.terminate(); edge.wait()
    return c1 - c0, b1 - b0, alive
PHASES = (sys.argv[3] if len(sys.argv) > 3 else 'ingest,play-rtmp,play-srt').split(',')
size_ts, size_flv = os.path.getsize('in.ts'), os.path.getsize('in.flv')
for proto in (['rtmp', 'srt', 'rtmp', 'srt'] if 'ingest' in PHASES else []):
    c, b = ingest(proto)
    size = size_flv if proto == 'rtmp' else size_ts
    print(f'ingest {proto}: edge cpu {c:.2f} s for {size/1e6:.1f} MB -> {c/(size/1e9):.1f} cpu-s/GB', flush=True)
for proto in [p for p in ['rtmp', 'srt'] if f'play-{p}' in PHASES]:
    c, b, alive = play(proto, 10)
    print(f'play {proto} x10: edge cpu {c:.2f} s for {b/1e6:.1f} MB delivered (RTMP bytes) -> {c/(b/1e9):.1f} cpu-s/GB, players alive {alive}', flush=True)
