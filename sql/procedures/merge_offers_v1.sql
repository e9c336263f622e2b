-- The worked merge example (README, "Segments"): for each contact, the open offers in the
-- contact's city (attribute "city", any case), newest first, at most five. A template reads
-- them as {% for offer in data.offers %}{{ offer.title }}{% endfor %}.
-- Register with: flask --app app segments register
CREATE FUNCTION segments.merge_offers_v1(ids bigint[])
RETURNS TABLE (contact_id bigint, data jsonb)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.id,
           jsonb_build_object('offers', coalesce(
               (SELECT jsonb_agg(jsonb_build_object('title', o.title, 'city', o.city, 'url', o.url)
                                 ORDER BY o.created_at DESC, o.id DESC)
                  FROM (SELECT * FROM public.offers o
                         WHERE o.open AND lower(o.city) = lower(c.attributes ->> 'city')
                         ORDER BY o.created_at DESC, o.id DESC LIMIT 5) o),
               '[]'::jsonb))
      FROM public.contacts c
     WHERE c.id = ANY (ids);
END;
