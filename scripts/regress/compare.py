# compare.py OLD NEW: the records of every run's metrics.jsonl in order (each key of OLD with the same
# value in NEW; timings left out; keys new in NEW listed) and the SHA-256 of every checkpoint safetensors.
import json,sys,os,hashlib,glob
a,b=sys.argv[1],sys.argv[2]
VOL=('timing_s/','tokens_per_s','rollout/tokens_per_s','rollout/groups_per_s','bus/data_wait_frac','bus/transport_frac','bus/redelivered')
def load(p):
    out=[]
    for l in open(p):
        r=json.loads(l); r.pop('time',None)
        out.append({k:v for k,v in r.items() if not any(k.startswith(x) or k.endswith(x) for x in VOL)})
    return out
bad=0
for run in sorted(os.listdir(a)):
    pa=os.path.join(a,run,'metrics.jsonl'); pb=os.path.join(b,run,'metrics.jsonl')
    if not os.path.exists(pa): continue
    ma,mb=load(pa),load(pb)
    added=set()
    if len(ma)==len(mb):
        for x,y in zip(ma,mb):
            added|=set(y)-set(x)
            for k in set(y)-set(x): y.pop(k)
    if added: print(run,'new keys (not in the baseline):',sorted(added))
    if ma!=mb:
        bad+=1; print(run,'METRICS DIFFER', len(ma), len(mb))
        for x,y in zip(ma,mb):
            if x!=y:
                ks=set(x)|set(y)
                print('  step',x.get('stage'),x.get('step'),{k:(x.get(k),y.get(k)) for k in ks if x.get(k)!=y.get(k)}); break
    else: print(run,'metrics identical:',len(ma),'records')
    n=0
    for f in sorted(glob.glob(os.path.join(a,run,'checkpoints','*','*.safetensors'))):
        g=f.replace(a,b,1)
        h=lambda p: hashlib.sha256(open(p,'rb').read()).hexdigest() if os.path.exists(p) else None
        if h(f)!=h(g): bad+=1; print('  DIFF',f[len(a):])
        n+=1
    print('  ',n,'safetensors files compared')
sys.exit(1 if bad else 0)
