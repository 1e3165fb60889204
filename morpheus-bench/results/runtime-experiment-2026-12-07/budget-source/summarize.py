import json,sys,glob,statistics as st
d=sys.argv[1]
for tag in sys.argv[2:]:
    vals={}
    for f in sorted(glob.glob(f"{d}/starv-{tag}-*.json")):
        j=json.load(open(f))
        for run in j['runs']:
            if run['sched']=='default': continue
            for rd in run['rounds']:
                vs={v['strategy']:v for v in rd['result']['variants']}
                b,m=vs['blocking'],vs['morpheus']
                def eff(v): return v['units']/(v['worker_cpu_s']*1e3)
                vals.setdefault('work M/B',[]).append(m['units']/b['units'])
                vals.setdefault('eff M/B',[]).append(eff(m)/eff(b))
                vals.setdefault('sys M',[]).append(m['worker_system_s']/m['worker_cpu_s'])
                vals.setdefault('cpu M/B',[]).append(m['worker_cpu_s']/b['worker_cpu_s'])
                c=m['sched']['counters'] if m.get('sched') else {}
                for k in ('hints_sent','nr_wakeup_preempts','nr_slice_preempts','nr_timer_kicks'):
                    vals.setdefault(k+'/s',[]).append(c.get(k,0)/m['wall_s'])
                cb=b['sched']['counters'] if b.get('sched') else {}
                vals.setdefault('B wakeup_preempts/s',[]).append(cb.get('nr_wakeup_preempts',0)/b['wall_s'])
    print(tag, ' '.join(f"{k}={st.median(v):.3g}({min(v):.3g}..{max(v):.3g})" for k,v in vals.items()), 'n=',len(vals['work M/B']))
