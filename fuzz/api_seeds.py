#!/usr/bin/env python3
# Seeds for the api_requests / api_responses corpora: one JSON object per body type of
# protocol/src/api, every field filled with a placeholder of its type. Usage (from the root):
#   python3 fuzz/api_seeds.py SendBody,AckBody fuzz/corpus/api_requests
import re,glob,json,hashlib,os,sys
structs={}
for f in glob.glob('protocol/src/api/*.rs'):
    src=open(f).read()
    for m in re.finditer(r'pub struct (\w+)\s*\{(.*?)\n\}',src,re.S):
        fields=re.findall(r'pub (\w+): ([^\n]+?),\s*$',m.group(2),re.M)
        structs[m.group(1)]=fields
def val(t,depth=0):
    t=t.strip()
    if t.startswith('Option<'): return val(t[7:-1],depth)
    if t.startswith('Vec<'): return [val(t[4:-1],depth+1)]
    if t in('u8','u16','u32','u64','i64','i32','usize'): return 1
    if t=='bool': return True
    if t=='String': return "AAAA"
    if t=='Id': return "00112233445566778899aabbccddeeff"
    if t in structs and depth<4: return obj(t,depth+1)
    return "AAAA"
def obj(name,depth=0):
    return {k:val(t,depth) for k,t in structs[name]}
req=sys.argv[1].split(',');out=sys.argv[2]
os.makedirs(out,exist_ok=True)
for n in req:
    if n not in structs: print('missing',n); continue
    b=json.dumps(obj(n),separators=(',',':')).encode()
    open(os.path.join(out,'seed-'+hashlib.sha256(b).hexdigest()[:16]),'wb').write(b)
