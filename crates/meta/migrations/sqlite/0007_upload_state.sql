-- The upload area's state as the blob store returned it with the last append (which segments,
-- written by which append, make up the area). It moves together with `size` in one
-- compare-and-set, so that of several writers racing on one session only the one recorded here
-- is ever read or committed. '' is an empty area.
ALTER TABLE uploads ADD COLUMN state TEXT NOT NULL DEFAULT '';
