import json,statistics as st,sys
D=sys.argv[1]; vs=sys.argv[2].split(',')
figs={'lat':['light p50 ms','light p99 ms','heavy/s'],'lat2':['light p50 ms','light p99 ms','heavy/s'],'starv':['morpheus/blocking units','Morpheus probe p99 ms']}
for prog,fl in figs.items():
    for fig in fl:
        line=f'{prog:5} {fig:26}'
        for v in vs:
            absd=[];absm=[];rat=[]
            for rep in [1,2]:
                d=json.load(open(f'{D}/{prog}-{v}-{rep}.json'))
                h={r['label']:{x['figure']:x for x in r['headline']} for r in d['runs']}
                labs=list(h); dl=[l for l in labs if 'default' in l][0]; ml=[l for l in labs if 'default' not in l][0]
                a=h[dl][fig]['value']['per_round']; b=h[ml][fig]['value']['per_round']
                absd+=a; absm+=b; rat+=[y/x for x,y in zip(a,b) if x]
            line+=f' | {v}: def {st.median(absd):.3g} morph {st.median(absm):.3g} ratio {st.median(rat):.2f} ({min(rat):.2f}..{max(rat):.2f})'
        print(line)
